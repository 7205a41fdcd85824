"""Private functions only the platform may call (the `service` auth mode).

Two locks on the door, as for Cloud Tasks workers:

- in production the function is deployed without public access, and the
  caller sends a Google ID token for the function's URL (fetched from the
  metadata server as the caller's service account), which Cloud Functions
  checks before the request reaches us;
- every call also carries `X-Service-Signature: t=<unix time>,v1=<hex>`, an
  HMAC-SHA256 under `SERVICE_SIGNING_SECRET` over the time and the exact
  body; the function refuses a missing, wrong or stale (over five minutes)
  signature before parsing anything. Locally (no IAM) this is the lock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError

from shared.platform import coldstart
from shared.platform.config import get_settings
from shared.platform.errors import Unavailable
from shared.platform.http import json_response
from shared.platform.logging import configure_logging
from shared.platform.values import UnreadableJson, UnstorableValue, parse_json

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Service-Signature"
MAX_SKEW_SECONDS = 300

ModelT = TypeVar("ModelT", bound=BaseModel)


def _mac(timestamp: str, body: bytes) -> str:
    key = get_settings().service_secret()
    message = b"service.v1." + timestamp.encode() + b"." + body
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(body: bytes) -> str:
    """Return the signature header value for a body sent now."""
    timestamp = str(int(time.time()))
    return f"t={timestamp},v1={_mac(timestamp, body)}"


def verify(body: bytes, header: str | None) -> bool:
    """Check a signature header: right key, right body, at most five minutes old."""
    fields = dict(part.split("=", 1) for part in (header or "").split(",") if "=" in part)
    timestamp, signature = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(_mac(timestamp, body), signature)


def call(url: str, payload: BaseModel, timeout: float) -> Any:
    """POST a signed JSON body to a private function and return the streaming response.

    Returns:
        The `requests` response, opened with `stream=True` (the caller closes it).

    Raises:
        Unavailable: The function could not be reached or answered an error.
    """
    import requests

    body = payload.model_dump_json(by_alias=True).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body)}
    if get_settings().is_production:
        headers["Authorization"] = f"Bearer {_id_token(url)}"
    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, stream=True)
    except requests.RequestException as exc:
        raise Unavailable(f"Service unreachable: {type(exc).__name__}") from exc
    if response.status_code != 200:
        response.close()
        logger.error("service call failed", extra={"status": response.status_code})
        raise Unavailable("Service call failed")
    return response


def _id_token(audience: str) -> str:
    import google.auth.transport.requests
    from google.oauth2 import id_token

    token = id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)  # type: ignore[no-untyped-call]
    return str(token)


def service_function(
    model: type[ModelT], handler: Callable[[ModelT], flask.Response]
) -> Callable[[flask.Request], flask.Response]:
    """Make the entry point of a private function.

    Args:
        model: Validates the JSON body (after the signature is checked).
        handler: Serves a valid call.

    Returns:
        The functions-framework entry point: 401 for a bad signature, 422 for
        a bad body, otherwise the handler's response.
    """
    configure_logging()

    @coldstart.entry_point
    def entry_point(request: flask.Request) -> flask.Response:
        body = request.get_data(cache=False)
        if not verify(body, request.headers.get(SIGNATURE_HEADER)):
            logger.warning("refused an unsigned service call")
            return json_response({"detail": "Invalid signature"}, 401)
        try:
            payload = model.model_validate(parse_json(body))
        except (UnreadableJson, UnstorableValue) as exc:
            return json_response({"detail": [{"loc": ["body"], "msg": str(exc)}]}, 422)
        except ValidationError as exc:
            detail = exc.errors(include_url=False)
            return json_response({"detail": json.loads(json.dumps(detail, default=str))}, 422)
        return handler(payload)

    return entry_point
