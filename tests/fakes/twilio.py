"""A Twilio Messages API server: `POST /2010-04-01/Accounts/{sid}/Messages.json`.

Speaks Twilio's wire format: HTTP basic auth with the account SID and auth
token, a form-encoded body (`To`, `From`, `Body`), 201 with the message
resource as JSON, and Twilio's error JSON (`code`, `message`, `more_info`,
`status`) on failure.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate

import flask


@dataclass
class FakeTwilio:
    """The fake's state: credentials, sent messages, and a failure switch."""

    account_sid: str = "AC" + "0" * 32
    auth_token: str = "twilio-test-token"
    from_number: str = "+12015550000"
    messages: list[dict[str, str]] = field(default_factory=list)
    failing: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def last_code(self, to: str) -> str:
        """The 6-digit code in the latest message to `to`."""
        with self._lock:
            bodies = [m["Body"] for m in self.messages if m["To"] == to]
        match = re.search(r"\b(\d{6})\b", bodies[-1])
        assert match, bodies[-1]
        return match.group(1)

    def sent_to(self, to: str) -> int:
        with self._lock:
            return sum(1 for m in self.messages if m["To"] == to)

    def app(self) -> flask.Flask:
        app = flask.Flask("fake-twilio")

        def error(status: int, code: int, message: str) -> flask.Response:
            response = flask.jsonify(
                code=code,
                message=message,
                more_info=f"https://www.twilio.com/docs/errors/{code}",
                status=status,
            )
            response.status_code = status
            return response

        @app.post("/2010-04-01/Accounts/<sid>/Messages.json")
        def create_message(sid: str) -> flask.Response:
            auth = flask.request.authorization
            if (
                auth is None
                or auth.username != self.account_sid
                or auth.password != self.auth_token
                or sid != self.account_sid
            ):
                return error(401, 20003, "Authenticate")
            form = flask.request.form
            if not form.get("To"):
                return error(400, 21604, "A 'To' phone number is required.")
            if not form.get("Body"):
                return error(400, 21602, "Message body is required.")
            if self.failing:
                return error(
                    400, 21211, f"The 'To' number {form['To']} is not a valid phone number."
                )
            message_sid = "SM" + uuid.uuid4().hex
            with self._lock:
                self.messages.append(dict(form))
            response = flask.jsonify(
                sid=message_sid,
                account_sid=sid,
                to=form["To"],
                **{"from": form.get("From")},
                body=form["Body"],
                status="queued",
                num_segments="1",
                direction="outbound-api",
                api_version="2010-04-01",
                date_created=formatdate(usegmt=True),
                uri=f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
            )
            response.status_code = 201
            return response

        return app
