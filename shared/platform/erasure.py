"""Account deletion: the `deletions/{userId}` record, a user's documents, batch deletes.

This module owns `deletions/{userId}`. The record exists from the moment a
deletion is requested until the last step has run, and holds what later
steps need once the profile is gone: the user's phone and email, the keys of
their pending uploads, a random tombstone id that replaces theirs in other
users' matches, and the steps already done. While it exists the user is
refused on every request (`shared.platform.auth` checks it whenever it
resolves a token); when the deletion finishes it is deleted too, so nothing
naming the user is left.

It lives in `platform` because authentication needs it; the steps
themselves are in `shared.privacy`, which calls each collection's owner.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.platform import clients

if TYPE_CHECKING:
    from google.cloud.firestore import CollectionReference, DocumentReference, Query

DELETIONS = "deletions"
BATCH = 200
"""Documents deleted per commit (Firestore allows 500 writes in one)."""


def _ref(user_id: str) -> DocumentReference:
    return clients.firestore().collection(DELETIONS).document(user_id)


def pending(user_id: str) -> dict[str, Any] | None:
    """Return a user's deletion record, or None when no deletion is under way."""
    record = _ref(user_id).get().to_dict()
    return dict(record) if record is not None else None


def is_erasing(user_id: str) -> bool:
    """Tell whether a deletion of the user was requested and has not finished."""
    return bool(_ref(user_id).get().exists)


def start(user_id: str, facts: dict[str, Any]) -> dict[str, Any]:
    """Record that a user is being deleted (the first request wins; later ones add facts).

    Args:
        user_id: The user.
        facts: `phone`, `email` and `pendingKeys` known now (merged into the record).

    Returns:
        The record as stored.
    """
    from google.api_core import exceptions as google_exceptions
    from google.cloud import firestore

    ref = _ref(user_id)
    record = {
        "userId": user_id,
        "status": "deleting",
        "tombstone": f"deleted-{secrets.token_hex(12)}",
        "done": [],
        "requestedAt": datetime.now(UTC),
        **facts,
    }
    try:
        ref.create(record)
    except google_exceptions.AlreadyExists:
        keys = facts.get("pendingKeys") or []
        changes = {k: v for k, v in facts.items() if v and k != "pendingKeys"}
        if keys:
            changes["pendingKeys"] = firestore.ArrayUnion(list(keys))
        if changes:
            ref.update(changes)
    stored = ref.get().to_dict()
    return dict(stored or record)


def step_done(user_id: str, step: str) -> bool:
    """Record that one deletion step finished (a retried task skips it).

    Returns:
        False when the record is gone: another task finished the deletion meanwhile.
    """
    from google.api_core import exceptions as google_exceptions
    from google.cloud import firestore

    try:
        _ref(user_id).update({"done": firestore.ArrayUnion([step])})
    except google_exceptions.NotFound:
        return False
    return True


def finish(user_id: str) -> None:
    """Delete the record: the user no longer exists anywhere."""
    _ref(user_id).delete()


def belonging_to(collection: str, value: str, *, field: str = "userId") -> Query:
    """Return the query of a collection's documents whose `field` names a user.

    Owner modules pass their own collection, to delete or export a user's
    documents; `value` is what `field` holds for the user (their id, phone or contact).
    """
    from google.cloud.firestore import FieldFilter

    owned = FieldFilter(field, "==", value)
    return clients.firestore().collection(collection).where(filter=owned)


def delete_matching(query: Query | CollectionReference) -> list[str]:
    """Delete every document a query matches, `BATCH` documents per commit.

    Documents' sub-collections are not touched: their owner deletes them first.

    Returns:
        The ids of the deleted documents.
    """
    db = clients.firestore()
    deleted: list[str] = []
    while True:
        refs = [snapshot.reference for snapshot in query.limit(BATCH).stream()]
        if not refs:
            return deleted
        batch = db.batch()
        for ref in refs:
            batch.delete(ref)
        batch.commit()
        deleted += [ref.id for ref in refs]
