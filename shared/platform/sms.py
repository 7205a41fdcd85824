"""Sending SMS: the Twilio Messages API in production, a console sender locally."""

from __future__ import annotations

import logging
from typing import Protocol

import requests

from shared.platform.config import Settings
from shared.platform.errors import Unavailable

logger = logging.getLogger(__name__)


class SmsSender(Protocol):
    """Sends one text message."""

    def send(self, to: str, body: str) -> None:
        """Send `body` to the E.164 number `to`.

        Raises:
            Unavailable: The message could not be handed to the provider.
        """


class TwilioSender:
    """Twilio's Messages API (`POST /2010-04-01/Accounts/{sid}/Messages.json`).

    Args:
        settings: Provides the API base, account SID, auth token and sender number.
        session: The HTTP session to use.
    """

    def __init__(self, settings: Settings, session: requests.Session) -> None:
        if not (
            settings.twilio_account_sid
            and settings.twilio_auth_token
            and settings.twilio_from_number
        ):
            raise RuntimeError(
                "SMS_PROVIDER=twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN "
                "and TWILIO_FROM_NUMBER"
            )
        self._url = (
            f"{settings.twilio_api_base.rstrip('/')}/2010-04-01/Accounts/"
            f"{settings.twilio_account_sid}/Messages.json"
        )
        self._auth = (settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())
        self._from = settings.twilio_from_number
        self._session = session

    def send(self, to: str, body: str) -> None:
        """Send one message through Twilio.

        Args:
            to: The E.164 recipient.
            body: The text.

        Raises:
            Unavailable: Twilio refused the message or could not be reached.
        """
        try:
            response = self._session.post(
                self._url,
                data={"To": to, "From": self._from, "Body": body},
                auth=self._auth,
                timeout=10,
            )
        except requests.RequestException as exc:
            raise Unavailable("SMS provider unreachable") from exc
        if response.status_code >= 300:
            error = _twilio_error(response)
            logger.error("twilio refused message", extra={"status": response.status_code, **error})
            raise Unavailable("SMS could not be sent")


def _twilio_error(response: requests.Response) -> dict[str, object]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return {"twilio_code": payload.get("code"), "twilio_message": payload.get("message")}


class ConsoleSender:
    """Logs messages instead of sending them (local development only).

    Args:
        settings: Refused when `APP_ENV=production`.
    """

    def __init__(self, settings: Settings) -> None:
        if settings.is_production:
            raise RuntimeError("the console SMS sender is refused in production")

    def send(self, to: str, body: str) -> None:
        """Write the message to the log, where a developer can read the code.

        Args:
            to: The E.164 recipient (masked in the log).
            body: The text, logged as is.
        """
        logger.warning("console sms (not sent): %s", body, extra={"to": to})
