"""The LoopMessage stand-in: both API generations, plus an attachment host.

- legacy: `POST /api/v1/message/send/` with `Authorization` (authorization key)
  and `Loop-Secret-Key`, body `{recipient, text, sender_name, ...}`, answered
  `{message_id, success: true, recipient, text}`;
- current: the same path with only `Authorization` (API key), body
  `{contact, text, sender, ...}`, answered `{message_id, contact, text}`, and
  `POST /api/v1/message/show-typing/` `{message_id, typing, read}`.

Refusals use LoopMessage's shape: a 4xx with `{"success": false, "code": N,
"message": ...}` (400 for parameter errors, 401 for bad keys, 402 for no
credits). Tests queue failures with `fail_next`. Attachments are served from
`GET /attachments/<name>` like LoopMessage's file host. `GET /` lists the
messages sent through it and every exchange (`devstack.standins.journal`).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import flask

from devstack.standins.journal import Journal, install


@dataclass
class LoopMessageStandIn:
    """The stand-in's state: credentials, what was sent, queued failures and files."""

    api: str = "legacy"
    auth_key: str = "local-loop-auth-key"
    secret_key: str = "local-loop-secret-key"  # noqa: S105 - the stand-in's own local key
    sender: str = "series.concierge"
    sent: list[dict[str, Any]] = field(default_factory=list)
    typing: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, int]] = field(default_factory=list)
    # Sends taken (recorded as sent) but answered late or by a crash: (delay, status).
    unanswered: list[tuple[float, int]] = field(default_factory=list)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    journal: Journal = field(default_factory=Journal)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def settings(self, url: str) -> dict[str, str]:
        """The `LOOPMESSAGE_*` settings that point our client at this stand-in served at `url`."""
        return {
            "LOOPMESSAGE_API": self.api,
            "LOOPMESSAGE_BASE_URL": url,
            "LOOPMESSAGE_AUTH_KEY": self.auth_key,
            "LOOPMESSAGE_SECRET_KEY": self.secret_key,
            "LOOPMESSAGE_SENDER": self.sender,
        }

    def reset(self, api: str = "legacy") -> None:
        """Forget everything and speak the `api` generation."""
        with self._lock:
            self.api = api
            self.failures.clear()
            self.unanswered.clear()
        self.clear()

    def clear(self) -> None:
        """Forget what was sent and received (`DELETE /`)."""
        with self._lock:
            self.sent.clear()
            self.typing.clear()
        self.journal.clear()

    def _summary(self) -> dict[str, Any]:
        with self._lock:
            messages = [
                {
                    "to": m.get("recipient") or m.get("contact"),
                    "text": m.get("text"),
                    "message_id": m["message_id"],
                    "passthrough": m.get("passthrough"),
                }
                for m in self.sent
            ]
            return {"api": self.api, "sent": messages, "typing": list(self.typing)}

    def fail_next(self, status: int, code: int) -> None:
        """Refuse the next send with this HTTP status and LoopMessage code."""
        with self._lock:
            self.failures.append((status, code))

    def take_without_answer(self, *, delay: float = 0.0, status: int = 200) -> None:
        """Take the next send (it counts as sent), then answer after `delay` with `status`.

        A status other than 200 answers with a proxy's plain-text error page, not
        LoopMessage's refusal body: the sender cannot know the message was taken.
        """
        with self._lock:
            self.unanswered.append((delay, status))

    def _invalid(self, body: dict[str, Any], target: str) -> tuple[int, int, str] | None:
        """LoopMessage's refusal of a send's missing parameters, if any."""
        if not body.get("text"):
            return 400, 140, 'No "text" parameter in request'
        if not body.get(target):
            return 400, 150, f'No "{target}" parameter in request'
        if self.api == "legacy" and not body.get("sender_name"):
            return 400, 210, "Sender name not specified in request parameters"
        return None

    def sent_to(self, contact: str) -> list[dict[str, Any]]:
        """The messages sent to a phone number or email."""
        with self._lock:
            return [m for m in self.sent if contact in (m.get("recipient"), m.get("contact"))]

    def app(self) -> flask.Flask:
        """The stand-in's WSGI app."""
        app = flask.Flask("loopmessage-standin")
        install(
            app,
            self.journal,
            service="LoopMessage stand-in",
            summary=self._summary,
            clear=self.clear,
        )

        def refuse(status: int, code: int, message: str) -> flask.Response:
            response = flask.jsonify(success=False, code=code, message=message)
            response.status_code = status
            return response

        def authenticated() -> flask.Response | None:
            headers = flask.request.headers
            if not headers.get("Authorization"):
                return refuse(401, 110, "Missing credentials in request")
            if headers["Authorization"] != self.auth_key:
                return refuse(401, 125 if self.api == "legacy" else 130, "Invalid key")
            if self.api == "legacy" and headers.get("Loop-Secret-Key") != self.secret_key:
                return refuse(401, 130, "Secret key is invalid or does not exist")
            return None

        @app.post("/api/v1/message/send/")
        def send() -> flask.Response:
            refused = authenticated()
            if refused is not None:
                return refused
            body = flask.request.get_json(force=True)
            target = "recipient" if self.api == "legacy" else "contact"
            failure = self._invalid(body, target)
            if failure is None:
                with self._lock:
                    queued = self.failures.pop(0) if self.failures else None
                if queued is not None:
                    failure = (*queued, "refused on request")
            if failure is not None:
                return refuse(*failure)
            message_id = str(uuid.uuid4()).upper()
            with self._lock:
                self.sent.append({**body, "message_id": message_id, "api": self.api})
                unanswered = self.unanswered.pop(0) if self.unanswered else None
            if unanswered is not None:
                delay, status = unanswered
                time.sleep(delay)
                if status != 200:
                    return flask.Response("Bad Gateway", status=status, mimetype="text/plain")
            answer: dict[str, Any] = {"message_id": message_id, target: body[target]}
            answer["text"] = body["text"]
            if self.api == "legacy":
                answer["success"] = True
            return flask.jsonify(answer)

        @app.post("/api/v1/message/show-typing/")
        def show_typing() -> flask.Response:
            refused = authenticated()
            if refused is not None:
                return refused
            body = flask.request.get_json(force=True)
            if not body.get("message_id") and not body.get("contact"):
                return refuse(400, 120, "One or more required parameters are missing")
            with self._lock:
                self.typing.append(body)
            return flask.jsonify(success=True)

        @app.get("/attachments/<name>")
        def attachment(name: str) -> flask.Response:
            if name not in self.files:
                return flask.Response(status=404)
            data, content_type = self.files[name]
            return flask.Response(data, mimetype=content_type)

        return app
