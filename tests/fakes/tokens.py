"""Unsigned JWTs of the shape the Firebase emulators accept (`alg: none`)."""

from __future__ import annotations

import base64
import json
from typing import Any


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """Encode claims as an unsigned JWT."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
