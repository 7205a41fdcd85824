"""The `agent_webhook` function: LoopMessage deliveries for the iMessage concierge."""

from __future__ import annotations

import flask

from shared.platform.http import RequestContext, Router, http_function, json_response
from shared.social import imessage

router = Router("agent")


@router.post(
    "/agent/webhook",
    auth="webhook",
    summary="Process Webhook",
    query=imessage.WebhookQuery,
    body=imessage.LoopWebhook,
    response=imessage.WebhookAck,
    responses={503: "Service Unavailable"},
)
def process_webhook(
    ctx: RequestContext, query: imessage.WebhookQuery, body: imessage.LoopWebhook
) -> flask.Response:
    """Record a LoopMessage delivery (direct messages only) and queue the reply.

    Group messages are ignored; retried deliveries (same `webhook_id`) are
    acknowledged without effect; `bump=true` re-processes the unanswered
    messages of the conversation.
    """
    ack = imessage.receive(body, query.bump)
    return json_response(ack.model_dump(mode="json", exclude_none=True))


agent_webhook = http_function(router)
