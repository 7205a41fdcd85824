"""Fixed-window request counters kept in Firestore (shared by every instance).

A counter expires with its window (Firestore TTL on `expireAt`).
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.platform import clients
from shared.platform.errors import RateLimited
from shared.platform.transactions import Plan, write_if_unchanged

RATE_LIMITS = "rate_limits"


def window_state(
    record: dict[str, Any] | None, now: datetime, window: timedelta
) -> tuple[datetime, int]:
    """Return the current window's start and count, starting a new window when due.

    Args:
        record: The stored `{windowStart, count}`, or None.
        now: The current time.
        window: The window length.

    Returns:
        The window start and how many hits it holds so far.
    """
    start = (record or {}).get("windowStart")
    if not isinstance(start, datetime) or now - start >= window:
        return now, 0
    return start, int((record or {}).get("count", 0))


def retry_after(start: datetime, window: timedelta, now: datetime) -> int:
    """Seconds until the window that began at `start` ends (at least 1)."""
    return max(1, math.ceil((start + window - now).total_seconds()))


def consume(key: str, limit: int, window: timedelta, message: str) -> None:
    """Count one hit against `key`, refusing it when the window is full.

    Args:
        key: What is limited (for example `send-code-ip:203.0.113.9`); stored hashed.
        limit: Hits allowed per window.
        window: The window length.
        message: The `detail` of the 429 answer.

    Raises:
        RateLimited: The window already holds `limit` hits.
    """
    ref = (
        clients.firestore()
        .collection(RATE_LIMITS)
        .document(hashlib.sha256(key.encode()).hexdigest())
    )

    def hit(record: dict[str, Any] | None) -> Plan[None]:
        now = datetime.now(UTC)
        start, count = window_state(record, now, window)
        if count >= limit:
            raise RateLimited(message, retry_after=retry_after(start, window, now))
        return Plan(
            None, update={"windowStart": start, "count": count + 1, "expireAt": start + window}
        )

    write_if_unchanged(ref, hit)
