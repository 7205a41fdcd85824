"""Run a function in a Firestore transaction, with retries under contention."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from shared.platform import clients
from shared.platform.errors import Unavailable

if TYPE_CHECKING:
    from google.cloud.firestore import Transaction

T = TypeVar("T")
_ROUNDS = 4
_ATTEMPTS_PER_ROUND = 10


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
