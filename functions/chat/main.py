"""The `chat` function: chat tickets and session configuration."""

from __future__ import annotations

from shared.agents import chat as chats
from shared.platform.http import RequestContext, Router, http_function

router = Router("chat")
_OWNED = {404: "Not Found"}


@router.post(
    "/chat",
    auth="user",
    summary="Create Chat Ticket",
    body=chats.ChatRequest,
    response=chats.TicketCreated,
    responses={402: "Payment Required", 503: "Service Unavailable"},
)
def post_chat(ctx: RequestContext, body: chats.ChatRequest) -> chats.TicketCreated:
    """Queue a chat; poll `GET /chat/{ticket_id}` (or listen to the ticket document)."""
    return chats.create_ticket(ctx.user, body)


@router.get(
    "/chat/{ticket_id:id}",
    auth="user",
    summary="Get Chat Ticket",
    response=chats.ChatResponse,
    responses=_OWNED,
)
def get_chat(ctx: RequestContext, ticket_id: str) -> chats.ChatResponse:
    """The ticket's status, result and error (owner only)."""
    return chats.get_ticket(ctx.user, ticket_id)


@router.post(
    "/sessions/{session_id:id}/config",
    auth="user",
    summary="Save Session Config",
    body=chats.ProviderConfigBody,
    response=chats.SessionSaved,
    responses={403: "Forbidden"},
)
def save_session(
    ctx: RequestContext, session_id: str, body: chats.ProviderConfigBody
) -> chats.SessionSaved:
    """Create or update the session's provider configuration."""
    return chats.save_session(ctx.user, session_id, body)


@router.get(
    "/sessions/{session_id:id}/config",
    auth="user",
    summary="Get Session Config",
    response=chats.ProviderConfigBody,
    responses=_OWNED,
)
def get_session(ctx: RequestContext, session_id: str) -> chats.ProviderConfigBody:
    """The session's stored provider configuration."""
    return chats.get_session(ctx.user, session_id)


@router.delete(
    "/sessions/{session_id:id}",
    auth="user",
    summary="Delete Session",
    response=chats.SessionDeleted,
    responses=_OWNED,
)
def delete_session(ctx: RequestContext, session_id: str) -> chats.SessionDeleted:
    """Delete the session."""
    return chats.delete_session(ctx.user, session_id)


chat = http_function(router)
