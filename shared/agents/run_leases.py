"""Concurrent runs per user: leases in `run_leases/{userId}.{slot}` (the owner of that collection).

A user has `RUNS_PER_USER` slots; a lease is the slot's document (`userId`,
`runId`, `until`: the Unix time it ends, the run token's expiry). A
top-level run (`POST /agents/run-code`, its stream, `POST /rest/{name}`, a
chat with a `gofannon` agent) takes a lease before it starts: it creates
the first free slot's document (a create fails when the slot is held, so
two runs never hold one slot, on any instance, with no transaction and no
read). When every slot is held, a slot whose lease has ended (its run's
process died) is taken over by an update conditioned on the update time
just read; otherwise the run is refused with 429 and a `Retry-After`. The
lease is given back when the run ends, or its stream is closed, by
deleting the document conditioned on its own write (a lease taken over is
never deleted by its former holder). An agent call inside a run is part of
that run and takes no slot of the user's; the calls of one run (its whole
tree) in flight at once are bounded the same way, by `AGENT_CALLS_PER_RUN`
slots of the run (`{userId}.{runId}.{slot}`), so one run cannot fan out
into unbounded sandbox runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from shared.platform import clients, erasure
from shared.platform.config import get_settings
from shared.platform.errors import RateLimited

RUN_LEASES = "run_leases"
_RETRY_AFTER_AT_MOST = 10


@dataclass(frozen=True)
class Lease:
    """A held slot: its document and the update time of the write that took it."""

    ref: Any
    taken_at: Any


def _slots(pool: str, count: int) -> list[Any]:
    collection = clients.firestore().collection(RUN_LEASES)
    return [collection.document(f"{pool}.{slot}") for slot in range(count)]


def acquire(user_id: str, run_id: str, until: float, *, within: str | None = None) -> Lease:
    """Take a lease for a run (or for an agent call `within` a run) until `until` (Unix time).

    Args:
        user_id: Whose run it is.
        run_id: The run (or the agent call) taking the lease.
        until: When the lease ends by itself.
        within: The run id when the lease is for an agent call inside that run: its
            pool is the run's `AGENT_CALLS_PER_RUN` slots, not the user's runs.

    Returns:
        The lease, for `release`.

    Raises:
        RateLimited: Every slot of the pool is held; `retry_after` is the time until
            the earliest of them ends at the latest (capped at 10 s).
    """
    from google.api_core import exceptions as google_exceptions

    db = clients.firestore()
    settings = get_settings()
    lease = {"userId": user_id, "runId": run_id, "until": until}
    if within is None:
        slots, what = _slots(user_id, settings.runs_per_user), "runs"
    else:
        slots, what = _slots(f"{user_id}.{within}", settings.agent_calls_per_run), "agent calls"
    for ref in slots:
        try:
            return Lease(ref, ref.create(lease).update_time)
        except google_exceptions.AlreadyExists:
            continue
    ends = []
    for snapshot in db.get_all(slots):
        held_until = float((snapshot.to_dict() or {}).get("until", 0))
        if snapshot.exists and held_until > time.time():
            ends.append(held_until)
            continue
        try:
            if snapshot.exists:
                taken = db.write_option(last_update_time=snapshot.update_time)
                return Lease(
                    snapshot.reference, snapshot.reference.update(lease, option=taken).update_time
                )
            return Lease(snapshot.reference, snapshot.reference.create(lease).update_time)
        except (google_exceptions.FailedPrecondition, google_exceptions.AlreadyExists):
            continue
    wait = math.ceil(min(ends, default=time.time() + 1) - time.time())
    raise RateLimited(
        f"At most {len(slots)} {what} at a time; retry later",
        max(min(wait, _RETRY_AFTER_AT_MOST), 1),
    )


def release(lease: Lease) -> None:
    """Give a lease back (nothing happens when it ended and another run took the slot)."""
    from google.api_core import exceptions as google_exceptions

    unchanged = clients.firestore().write_option(last_update_time=lease.taken_at)
    try:
        lease.ref.delete(option=unchanged)
    except (google_exceptions.FailedPrecondition, google_exceptions.NotFound):
        return


def delete_user_data(user_id: str) -> None:
    """Delete a user's leases (re-runnable)."""
    erasure.delete_matching(erasure.belonging_to(RUN_LEASES, user_id))
