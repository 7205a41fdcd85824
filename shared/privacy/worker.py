"""The `account-deletion` worker: deletes a user's data step by step (see `deletion`).

Each step calls the owner module of the collections it empties; every step
can run again (bounded batch deletes, or a re-keying that a second run finds
nothing left to do), and each finished step is recorded on the deletion
record, so a retried, duplicated or crashed task resumes where the last one
stopped. A task runs at most `DELETION_STEPS_PER_TASK` steps, then queues
the next one. The last step sweeps every earlier step once more (a document
written meanwhile by a task already running), deletes the Firebase Auth
user, and then the deletion record goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.agents import accounts, agents, chat, data_store, demos, run_leases
from shared.platform import clients, erasure, tasks
from shared.platform.config import get_settings
from shared.platform.errors import Unavailable
from shared.platform.tasks import TaskContext
from shared.privacy.api import QUEUE, DeletionTask
from shared.social import augment, imessage, matches, phone_auth, photos, user_store

logger = logging.getLogger(__name__)


def _delete_firebase_user(user_id: str) -> None:
    """Delete the Firebase Auth user, if there is one."""
    from firebase_admin import auth as firebase_auth
    from firebase_admin import exceptions as firebase_exceptions

    try:
        firebase_auth.delete_user(user_id, app=clients.firebase_app())
    except (firebase_auth.UserNotFoundError, ValueError):
        return
    except firebase_exceptions.FirebaseError as exc:
        raise Unavailable("Firebase Auth is unavailable") from exc


def _contacts(record: dict[str, Any]) -> list[str]:
    values = (record.get("phone"), record.get("email"), record.get("firebaseEmail"))
    return sorted({str(value) for value in values if value})


def _identity(user_id: str, record: dict[str, Any]) -> None:
    user_store.delete_user_data(user_id)


def _sessions(user_id: str, record: dict[str, Any]) -> None:
    phone_auth.delete_user_data(user_id, record.get("phone"))


def _archetypes(user_id: str, record: dict[str, Any]) -> None:
    for archetype_id in user_store.created_archetypes(user_id):
        matches.delete_user_data(archetype_id, record["tombstone"], purge=True)
        photos.delete_user_data(archetype_id, [])  # an admin may have uploaded some
        user_store.delete_user_data(archetype_id)


def _matches(user_id: str, record: dict[str, Any]) -> None:
    matches.delete_user_data(user_id, record["tombstone"])
    user_store.forget_referrer(user_id, record["tombstone"])


def _augmentation(user_id: str, record: dict[str, Any]) -> None:
    augment.delete_user_data(user_id)


def _conversations(user_id: str, record: dict[str, Any]) -> None:
    imessage.delete_user_data(user_id, _contacts(record))


def _photos(user_id: str, record: dict[str, Any]) -> None:
    photos.delete_user_data(user_id, list(record.get("pendingKeys") or []))


def _account(user_id: str, record: dict[str, Any]) -> None:
    run_leases.delete_user_data(user_id)
    accounts.delete_user_data(user_id)


def _chats(user_id: str, record: dict[str, Any]) -> None:
    chat.delete_user_data(user_id)


def _agents(user_id: str, record: dict[str, Any]) -> None:
    agents.delete_user_data(user_id)


def _demos(user_id: str, record: dict[str, Any]) -> None:
    demos.delete_user_data(user_id)


def _data_store(user_id: str, record: dict[str, Any]) -> None:
    data_store.delete_user_data(user_id)


def _sign_in(user_id: str, record: dict[str, Any]) -> None:
    """Sweep every earlier step once more, then delete the Firebase Auth user.

    The sweep catches what a task already running when its step passed wrote
    meanwhile (a ledger entry, an archetype, a phone token issued mid-way).
    """
    for name, step in STEPS:
        if name != "sign_in":
            step(user_id, record)
    _delete_firebase_user(user_id)


Step = Callable[[str, dict[str, Any]], None]
STEPS: tuple[tuple[str, Step], ...] = (
    ("identity", _identity),
    ("sessions", _sessions),
    ("archetypes", _archetypes),
    ("matches", _matches),
    ("augmentation", _augmentation),
    ("conversations", _conversations),
    ("photos", _photos),
    ("account", _account),
    ("chats", _chats),
    ("agents", _agents),
    ("demos", _demos),
    ("data_store", _data_store),
    ("sign_in", _sign_in),
)
"""The deletion steps, in order; the profile and phone index go first (nobody finds the
user any more), the sign-in identity last (the record that refuses them stays until then)."""


def run(user_id: str, steps: int | None = None) -> int:
    """Run the user's next deletion steps (all of them when `steps` is None).

    Args:
        user_id: The user being deleted.
        steps: How many steps to run at most.

    Returns:
        How many steps remain (0: the user is gone, record included).
    """
    record = erasure.pending(user_id)
    if record is None:
        return 0
    remaining = [(name, step) for name, step in STEPS if name not in (record.get("done") or [])]
    for count, (name, step) in enumerate(remaining):
        if steps is not None and count >= steps:
            return len(remaining) - count
        step(user_id, record)
        if not erasure.step_done(user_id, name):
            return 0  # a concurrent task (a duplicate or a retry) finished it
        logger.info("account deletion step done", extra={"step": name})
    erasure.finish(user_id)
    logger.info("account deletion finished")
    return 0


def run_task(payload: DeletionTask, context: TaskContext) -> None:
    """Run a task's share of the steps, then queue the rest (a retry resumes)."""
    remaining = run(payload.userId, get_settings().deletion_steps_per_task)
    if remaining:
        done = len(STEPS) - remaining
        tasks.enqueue(QUEUE, payload, dedup_name=f"delete-{payload.userId}-{done}")
