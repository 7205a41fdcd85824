"""LoopMessage's iMessage API: sending texts and showing the typing indicator.

Two API generations exist; `LOOPMESSAGE_API` picks one:

- `legacy` (`https://server.loopmessage.com`): `POST /api/v1/message/send/`
  with the headers `Authorization` (the authorization key) and
  `Loop-Secret-Key`, body `{recipient, text, sender_name, reply_to_id,
  passthrough, attachments}`. There is no typing call: the answer to an
  inbound webhook carries `{"typing": N, "read": true}` instead.
- `current` (`https://a.loopmessage.com`): the same path with only
  `Authorization` (the API key), body `{contact, text, sender, reply_to_id,
  passthrough, attachments}`; typing through `POST
  /api/v1/message/show-typing/` `{message_id, typing, read}`.

A refused request answers non-200 with `{"success": false, "code": N,
"message": ...}`. Codes after which the same request can succeed later
(internal errors, "sending too frequently" on the legacy API), HTTP 429, a
5xx carrying LoopMessage's own refusal, and a connection that was never
made raise `Unavailable` (retry: LoopMessage did not take the message);
every other refusal raises `Refused` (retrying cannot help). A send whose
request may have reached LoopMessage without an answer we can read (a read
timeout, a connection dropped after sending, a 5xx without LoopMessage's
refusal body, a 200 without a message id) raises `MaybeSent`: it may have been
queued, so it is never re-sent blindly; its status webhooks (by our
`passthrough`) tell. A 200 means the message is queued at LoopMessage; its
fate arrives later as status webhooks carrying our `passthrough`. No call is
retried here: the task that sends decides (see `shared.social.imessage`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests

from shared.platform.config import Settings
from shared.platform.errors import BadRequest, Conflict, Unavailable

logger = logging.getLogger(__name__)

_ORIGINS = {"legacy": "https://server.loopmessage.com", "current": "https://a.loopmessage.com"}
# Codes whose request can succeed when repeated later, per API generation.
RETRY_CODES = {"legacy": frozenset({230, 330, 1000, 1010}), "current": frozenset({230, 1000, 1010})}
MAX_TEXT = 9_999


class MaybeSent(Conflict):
    """The send may have reached LoopMessage, but no answer says so: never re-send it blindly."""


class Refused(BadRequest):
    """LoopMessage refused the request for a reason a retry cannot fix.

    Attributes:
        code: LoopMessage's error code, when it sent one.
    """

    def __init__(self, detail: str, code: int | None) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class Sent:
    """A send LoopMessage accepted (queued, not yet delivered).

    Attributes:
        message_id: LoopMessage's id of the outbound message.
    """

    message_id: str


class LoopMessageClient:
    """One configured LoopMessage account.

    Args:
        settings: The `LOOPMESSAGE_*` settings.
        session: The pooled HTTP session.

    Raises:
        RuntimeError: The keys the chosen API needs are not configured.
    """

    def __init__(self, settings: Settings, session: requests.Session) -> None:
        self.api = settings.loopmessage_api
        if settings.loopmessage_auth_key is None or (
            self.api == "legacy"
            and (settings.loopmessage_secret_key is None or not settings.loopmessage_sender)
        ):
            raise RuntimeError(
                "LoopMessage needs LOOPMESSAGE_AUTH_KEY (and, for the legacy API,"
                " LOOPMESSAGE_SECRET_KEY and LOOPMESSAGE_SENDER)"
            )
        self._origin = (settings.loopmessage_base_url or _ORIGINS[self.api]).rstrip("/")
        self._headers = {
            "Authorization": settings.loopmessage_auth_key.get_secret_value(),
            "Content-Type": "application/json",
        }
        if self.api == "legacy" and settings.loopmessage_secret_key is not None:
            self._headers["Loop-Secret-Key"] = settings.loopmessage_secret_key.get_secret_value()
        self._sender = settings.loopmessage_sender
        self._session = session
        self._timeout = settings.loopmessage_timeout_seconds

    def send(
        self,
        contact: str,
        text: str,
        *,
        passthrough: str | None = None,
        reply_to_id: str | None = None,
    ) -> Sent:
        """Queue one text to a phone number or email.

        Args:
            contact: E.164 number or email.
            text: The message (cut to LoopMessage's limit).
            passthrough: Our reference, echoed in the message's status webhooks.
            reply_to_id: The inbound message this answers (shown as a reply).

        Returns:
            LoopMessage's id of the queued message.

        Raises:
            Unavailable: LoopMessage did not take the message; the same send may succeed later.
            MaybeSent: The request may have been taken; sending again could duplicate it.
            Refused: LoopMessage refused the message for good.
        """
        body: dict[str, Any] = {"text": text[:MAX_TEXT]}
        if self.api == "legacy":
            body.update(recipient=contact, sender_name=self._sender)
        else:
            body["contact"] = contact
            if self._sender:
                body["sender"] = self._sender
        if passthrough:
            body["passthrough"] = passthrough
        if reply_to_id:
            body["reply_to_id"] = reply_to_id
        try:
            answer = self._post("/api/v1/message/send/", body)
        except _Unanswered as exc:
            raise MaybeSent(exc.detail) from exc
        message_id = answer.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise MaybeSent("LoopMessage answered without a message id")
        return Sent(message_id=message_id)

    def show_typing(self, message_id: str, seconds: int) -> bool:
        """Show the typing indicator in reply to an inbound message (current API only).

        Best effort: LoopMessage refuses it outside an active conversation.

        Args:
            message_id: The inbound message's id.
            seconds: How long to show it (at most 60).

        Returns:
            Whether LoopMessage accepted the request (always False on the legacy
            API, where the webhook answer carries the indicator).
        """
        if self.api == "legacy" or seconds <= 0:
            return False
        body = {"message_id": message_id, "typing": min(seconds, 60), "read": True}
        try:
            self._post("/api/v1/message/show-typing/", body)
        except (Unavailable, Refused, _Unanswered) as exc:
            logger.info("typing indicator not shown: %s", exc.detail)
            return False
        return True

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST once (never retried here).

        Raises:
            Unavailable: LoopMessage did not take the request (no connection, 429, its own
                refusal with a retryable code or a 5xx).
            _Unanswered: The request may have been taken, but no readable answer says so.
            Refused: LoopMessage refused the request for good.
        """
        try:
            response = self._session.post(
                self._origin + path, json=body, headers=self._headers, timeout=self._timeout
            )
        except requests.RequestException as exc:
            name = type(exc).__name__
            if _never_connected(exc):
                raise Unavailable(f"LoopMessage unreachable: {name}") from exc
            raise _Unanswered(f"LoopMessage did not answer: {name}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        if response.status_code == 200 and payload.get("success") is not False:
            return payload
        code = payload.get("code")
        code = code if isinstance(code, int) else None
        logger.warning(
            "loopmessage refused request",
            extra={"status": response.status_code, "loop_code": code},
        )
        detail = f"LoopMessage answered {response.status_code} (code {code})"
        refusal = payload.get("success") is False
        if response.status_code >= 500 and not refusal:
            raise _Unanswered(detail)  # a proxy's or a crash's answer: the send may have happened
        if response.status_code == 429 or response.status_code >= 500:
            raise Unavailable(detail)
        if code in RETRY_CODES[self.api]:
            raise Unavailable(detail)
        raise Refused(detail, code)


class _Unanswered(Exception):
    """The request may have reached LoopMessage, and no answer we can read says what it did."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _never_connected(exc: requests.RequestException) -> bool:
    """Tell whether a failed request never reached LoopMessage (no connection was made)."""
    import urllib3

    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    reason = exc.args[0]
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError
    )
