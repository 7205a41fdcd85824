"""Cancelling streamed runs across instances (owner of `run_cancels`).

A run streamed by `POST /agents/run-code/stream` registers
`run_cancels/{runId}` (its owner, `cancelled: false`, `expireAt` for a TTL
policy) before it starts and deletes it when it ends. `POST
/agents/run-code/{runId}/cancel` sets `cancelled` on it (its owner or an
admin; anyone else, or a run that has ended, is 404), whichever instance
serves that call; the instance streaming the run reads the flag at most every
`POLL_SECONDS` and ends the run. Nothing else is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.platform import clients
from shared.platform.auth import Principal, can_access_owned
from shared.platform.errors import NotFound
from shared.platform.models import Model
from shared.platform.transactions import Plan, write_if_unchanged

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

RUN_CANCELS = "run_cancels"
POLL_SECONDS = 2.0


class CancelAccepted(Model):
    """The answer to a cancel: the run will end at its next check (within seconds)."""

    runId: str  # noqa: N815 - UI-style field name
    status: str = "cancelling"


def _ref(run_id: str) -> DocumentReference:
    return clients.firestore().collection(RUN_CANCELS).document(run_id)


def register(run_id: str, owner_id: str, lifetime_seconds: float) -> None:
    """Record a starting run, cancellable by its owner until `unregister`."""
    now = datetime.now(UTC)
    _ref(run_id).create(
        {
            "ownerId": owner_id,
            "cancelled": False,
            "createdAt": now,
            "expireAt": now + timedelta(seconds=lifetime_seconds),
        }
    )


def unregister(run_id: str) -> None:
    """Forget an ended run (a later cancel is 404)."""
    _ref(run_id).delete()


def cancelled(run_id: str) -> bool:
    """Whether the run's owner asked to cancel it (one document read)."""
    record = _ref(run_id).get().to_dict() or {}
    return bool(record.get("cancelled"))


def cancel(principal: Principal, run_id: str) -> CancelAccepted:
    """Ask for a running run to end (its owner or an admin).

    Raises:
        NotFound: No such running run, or someone else's.
    """

    def decide(record: dict[str, Any] | None) -> Plan[CancelAccepted]:
        if record is None or not can_access_owned(principal, record.get("ownerId")):
            raise NotFound("Run not found")
        accepted = CancelAccepted(runId=run_id)
        if record.get("cancelled"):
            return Plan(accepted)
        return Plan(accepted, update={"cancelled": True, "cancelledAt": datetime.now(UTC)})

    return write_if_unchanged(_ref(run_id), decide)
