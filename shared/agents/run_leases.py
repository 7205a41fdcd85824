"""Concurrent runs per user: leases in `run_leases/{userId}` (the owner of that collection).

The document holds `userId` and `runs`, a map of run id to the Unix time
its lease ends (the run's wall clock and a margin: the run token's expiry).
A top-level run (`POST /agents/run-code`, its stream, `POST /rest/{name}`,
a chat with a `gofannon` agent) takes a lease before it starts and gives it
back when it ends, or when its stream is closed early; a process that dies
leaves a lease that ends by itself. Both are compare-and-set writes of the
one document (no transaction, no lock waits), so `RUNS_PER_USER` holds
across every instance. Beyond it a run is refused with 429 and a
`Retry-After`. An agent call inside a run is part of that run and takes
no lease.
"""

from __future__ import annotations

import math
import time
from typing import Any

from shared.platform import clients, erasure
from shared.platform.config import get_settings
from shared.platform.errors import RateLimited
from shared.platform.transactions import Plan, write_if_unchanged

RUN_LEASES = "run_leases"
_RETRY_AFTER_AT_MOST = 10


def _ref(user_id: str) -> Any:
    return clients.firestore().collection(RUN_LEASES).document(user_id)


def _live(record: dict[str, Any] | None, now: float) -> dict[str, float]:
    runs = (record or {}).get("runs") or {}
    return {run_id: float(until) for run_id, until in runs.items() if float(until) > now}


def acquire(user_id: str, run_id: str, until: float) -> None:
    """Take a lease for a run until `until` (Unix time).

    Raises:
        RateLimited: The user already has `RUNS_PER_USER` runs going; `retry_after`
            is the time until the earliest of them ends at the latest (capped at 10 s).
    """
    limit = get_settings().runs_per_user

    def decide(record: dict[str, Any] | None) -> Plan[None]:
        now = time.time()
        runs = _live(record, now)
        if len(runs) >= limit:
            wait = min(math.ceil(min(runs.values()) - now), _RETRY_AFTER_AT_MOST)
            raise RateLimited(f"At most {limit} runs at a time; retry later", max(wait, 1))
        runs[run_id] = until
        return Plan(None, update={"userId": user_id, "runs": runs})

    write_if_unchanged(_ref(user_id), decide)


def release(user_id: str, run_id: str) -> None:
    """Give a run's lease back (nothing happens when it is gone already)."""

    def decide(record: dict[str, Any] | None) -> Plan[None]:
        if record is None or run_id not in (record.get("runs") or {}):
            return Plan(None)
        runs = _live(record, time.time())
        runs.pop(run_id, None)
        return Plan(None, update={"runs": runs})

    write_if_unchanged(_ref(user_id), decide)


def delete_user_data(user_id: str) -> None:
    """Delete a user's leases (re-runnable)."""
    erasure.delete_matching(erasure.belonging_to(RUN_LEASES, user_id))
