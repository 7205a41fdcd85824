"""Atomic read-decide-write on Firestore: transactions and optimistic single-document updates."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from shared.platform import clients
from shared.platform.errors import Unavailable

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference, Transaction

T = TypeVar("T")
_ROUNDS = 4
_ATTEMPTS_PER_ROUND = 10
_CAS_ATTEMPTS = 60


def run_in_transaction(body: Callable[[Transaction], T]) -> T:
    """Run `body(transaction)` until it commits.

    Reads must come before writes inside `body`. An exception raised by
    `body` rolls the transaction back and propagates unchanged; a body that
    must persist writes *and* report a refusal returns the refusal instead.

    Args:
        body: The transactional work.

    Returns:
        What `body` returned in the attempt that committed.

    Raises:
        Unavailable: Contention kept the transaction from committing.
    """
    from google.cloud import firestore

    db = clients.firestore()
    work = firestore.transactional(body)
    for round_number in range(_ROUNDS):
        try:
            result: T = work(db.transaction(max_attempts=_ATTEMPTS_PER_ROUND))
        except ValueError as exc:
            if "Failed to commit transaction" not in str(exc):
                raise
        else:
            return result
        time.sleep(random.uniform(0, 0.05 * 2**round_number))  # noqa: S311 - jitter
    raise Unavailable("The data is busy; please retry")


@dataclass
class Plan(Generic[T]):
    """What `write_if_unchanged` should write, decided from the document's current state.

    Attributes:
        result: What the call returns once the writes committed.
        update: New field values for the watched document (dotted paths allowed),
            or its whole content when it does not exist yet; None writes nothing to it.
        also_set: Other documents to merge in the same atomic commit.
    """

    result: T
    update: dict[str, Any] | None = None
    also_set: list[tuple[DocumentReference, dict[str, Any]]] = field(default_factory=list)


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
        if plan.update is None and not plan.also_set:
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
        try:
            batch.commit()
        except (google_exceptions.FailedPrecondition, google_exceptions.AlreadyExists):
            time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 6)))  # noqa: S311 - jitter
            continue
        return plan.result
    raise Unavailable("The data is busy; please retry")
