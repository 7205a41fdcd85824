"""Self-contained signed tokens: claims as base64url JSON, HMAC-SHA256 with the service secret.

A token is `payload~signature`. The signature covers `purpose + "." +
payload`, so a token made for one purpose (a demo capability) never verifies
as another (a run token) even though both are signed with
`SERVICE_SIGNING_SECRET`. Every token carries its expiry `e` (Unix time);
`read` refuses it once that has passed. Callers add their own prefix
(`run:`, `demo:`) so a token's kind is visible before it is checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

from shared.platform.config import get_settings
from shared.platform.errors import Unauthorized


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signature(purpose: str, payload: str) -> str:
    key = get_settings().service_secret()
    return _b64(hmac.new(key, f"{purpose}.{payload}".encode(), hashlib.sha256).digest())


def sign(purpose: str, claims: dict[str, Any]) -> str:
    """Make a token that carries `claims`.

    Args:
        purpose: What the token is for, with a version (`demo-capability.v1`).
        claims: JSON-serialisable claims; `e` (Unix time of expiry) is required.

    Returns:
        `payload~signature`.
    """
    if not isinstance(claims.get("e"), int | float):
        raise ValueError("a signed token needs its expiry `e`")
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}~{_signature(purpose, payload)}"


def read(purpose: str, token: str) -> dict[str, Any]:
    """Check a token's signature and expiry and return its claims.

    Args:
        purpose: The purpose it must have been signed for.
        token: `payload~signature` as `sign` made it.

    Returns:
        The claims (a JSON object with a numeric `e` in the future).

    Raises:
        Unauthorized: Malformed, signed for something else, tampered with, or expired.
    """
    payload, _, signature = token.partition("~")
    if not hmac.compare_digest(_signature(purpose, payload).encode(), signature.encode()):
        raise Unauthorized("Invalid token")
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise Unauthorized("Invalid token") from exc
    if not isinstance(claims, dict):
        raise Unauthorized("Invalid token")
    expires = claims.get("e")
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        raise Unauthorized("Invalid token")
    if expires <= time.time():
        raise Unauthorized("Token expired")
    return claims
