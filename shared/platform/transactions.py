"""Atomic read-decide-write on Firestore: optimistic compare-and-set commits (no lock waits)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared.platform import clients
from shared.platform.errors import NotFound, Unavailable

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

T = TypeVar("T")
_CAS_ATTEMPTS = 60


@dataclass
class Plan(Generic[T]):
    """What `write_if_unchanged` should write, decided from the document's current state.

    Attributes:
        result: What the call returns once the writes committed.
        update: New field values for the watched document (dotted paths allowed),
            or its whole content when it does not exist yet; None writes nothing to it.
        also_set: Other documents to merge in the same atomic commit.
        creates: Documents that must not exist yet (a uniqueness claim); when one
            does, the commit fails whole and `decide` runs again to see why.
        updates: Existing documents to update (field paths and transforms allowed);
            a missing one fails the commit whole.
        deletes: Documents to delete in the same commit.
    """

    result: T
    update: dict[str, Any] | None = None
    also_set: list[tuple[DocumentReference, dict[str, Any]]] = field(default_factory=list)
    creates: list[tuple[DocumentReference, dict[str, Any]]] = field(default_factory=list)
    updates: list[tuple[DocumentReference, dict[str, Any]]] = field(default_factory=list)
    deletes: list[DocumentReference] = field(default_factory=list)

    def writes_nothing(self) -> bool:
        """Whether committing this plan would change nothing."""
        others = self.also_set or self.creates or self.updates or self.deletes
        return self.update is None and not others


def write_if_unchanged(
    ref: DocumentReference, decide: Callable[[dict[str, Any] | None], Plan[T]]
) -> T:
    """Read a document, decide, and commit only if nobody changed it meanwhile.

    Optimistic concurrency for one contended document (an account balance, a
    ticket): the write carries the read's update time as a precondition and
    the whole decision is retried when it fails. Unlike a transaction it holds
    no locks, so many concurrent callers on one document stay fast (the
    Firestore emulator serialises contending transactions by 30-second lock
    timeouts). `decide` may raise a domain error to refuse; nothing is written.
    `decide` may read other documents itself: a plan built on a stale read of
    them is protected by its `creates` (which fail when the claim was taken)
    and re-decided.

    Args:
        ref: The watched document.
        decide: Maps its current data (None if missing) to a `Plan`.

    Returns:
        The committed plan's result.

    Raises:
        Unavailable: The document kept changing under us.
    """
    from google.api_core import exceptions as google_exceptions

    db = clients.firestore()
    for attempt in range(_CAS_ATTEMPTS):
        snapshot = ref.get()
        plan = decide(snapshot.to_dict() if snapshot.exists else None)
        if plan.writes_nothing():
            return plan.result
        batch = db.batch()
        if plan.update is not None:
            if snapshot.exists:
                precondition = db.write_option(last_update_time=snapshot.update_time)
                batch.update(ref, plan.update, option=precondition)
            else:
                batch.create(ref, plan.update)
        for other, data in plan.also_set:
            batch.set(other, data, merge=True)
        for other, data in plan.creates:
            batch.create(other, data)
        for other, data in plan.updates:
            batch.update(other, data)
        for other in plan.deletes:
            batch.delete(other)
        try:
            batch.commit()
        except google_exceptions.NotFound as exc:
            raise NotFound("Not found") from exc
        except (google_exceptions.FailedPrecondition, google_exceptions.AlreadyExists):
            time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 6)))  # noqa: S311 - jitter
            continue
        return plan.result
    raise Unavailable("The data is busy; please retry")
