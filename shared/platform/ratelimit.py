"""Fixed-window request counters kept in Firestore (shared by every instance)."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.platform import clients
from shared.platform.errors import RateLimited
from shared.platform.transactions import run_in_transaction

if TYPE_CHECKING:
    from google.cloud.firestore import Transaction

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

    def hit(transaction: Transaction) -> int | None:
        now = datetime.now(UTC)
        start, count = window_state(ref.get(transaction=transaction).to_dict(), now, window)
        if count >= limit:
            return retry_after(start, window, now)
        transaction.set(
            ref, {"windowStart": start, "count": count + 1, "expiresAt": start + window}
        )
        return None

    wait = run_in_transaction(hit)
    if wait is not None:
        raise RateLimited(message, retry_after=wait)
