"""The owner of the `users` collection and its uniqueness indexes.

`users/{userId}` holds the social profile only (the agent-platform account
lives in `accounts/{userId}`, owned by `shared.agents.accounts`). Phone
numbers and emails are unique through index documents `user_phones/{e164}`
and `user_emails/{email}` holding `{userId}`; a claim is a `create` in the
same atomic commit as the profile write, so two users can never hold one
value, and contention ends in a quick 409 instead of a lock wait.

Every read and write of these collections goes through this module; the
profile, match and picture modules call it. Documents written before the
account moved out may still carry account fields (`basicInfo`, ...) or hold
nothing but them: such a document is not a profile (`is_profile`), and
creating the profile writes over it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.platform import clients, erasure
from shared.platform.auth import USER_PHONES, USERS
from shared.platform.errors import Conflict, NotFound
from shared.platform.paging import batches
from shared.platform.transactions import Plan, write_if_unchanged
from shared.social.profile_types import PictureData

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

USER_EMAILS = "user_emails"
DEFAULT_ELO = 1600
_INDEXES = {
    "phone": (USER_PHONES, "Phone number already in use"),
    "email": (USER_EMAILS, "Email already in use"),
}


def user_ref(user_id: str) -> DocumentReference:
    """Return the reference of a user's profile document."""
    return clients.firestore().collection(USERS).document(user_id)


def is_profile(record: dict[str, Any] | None) -> bool:
    """Tell whether a stored document is a profile (not absent, not an account-only leftover)."""
    return record is not None and "userId" in record and "metadata" in record


def exists(user_id: str) -> bool:
    """Tell whether a user has a profile."""
    return is_profile(user_ref(user_id).get().to_dict())


def load(user_id: str) -> dict[str, Any]:
    """Return a user's profile document.

    Raises:
        NotFound: There is no such profile.
    """
    record = user_ref(user_id).get().to_dict()
    if not is_profile(record):
        raise NotFound("User not found")
    assert record is not None
    return dict(record)


def load_many(user_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Return the existing profiles among `user_ids`, by id (one round trip)."""
    refs = [user_ref(user_id) for user_id in user_ids]
    found = {}
    for snapshot in clients.firestore().get_all(refs):
        record = snapshot.to_dict() if snapshot.exists else None
        if is_profile(record):
            assert record is not None
            found[snapshot.id] = record
    return found


def holder(field: str, value: str) -> str | None:
    """Return the user holding a unique `phone` (E.164) or `email` (normalised), if any."""
    collection, _ = _INDEXES[field]
    if "/" in value:
        return None  # never a stored claim: such values are refused before they are stored
    record = clients.firestore().collection(collection).document(value).get().to_dict()
    return (record or {}).get("userId")


def claims(
    user_id: str, wanted: dict[str, str | None]
) -> list[tuple[DocumentReference, dict[str, Any]]]:
    """Return the index documents to create for a user's new phone and email.

    Args:
        user_id: The claiming user.
        wanted: `phone` and/or `email` values; None or the user's own value claims nothing.

    Returns:
        The `creates` of a `Plan`: each fails the commit if taken meanwhile.

    Raises:
        Conflict: Another user already holds one of the values.
    """
    creates = []
    db = clients.firestore()
    for field, value in wanted.items():
        if not value:
            continue
        collection, message = _INDEXES[field]
        current = holder(field, value)
        if current == user_id:
            continue
        if current is not None:
            raise Conflict(message)
        creates.append((db.collection(collection).document(value), {"userId": user_id}))
    return creates


def releases(record: dict[str, Any], changed: dict[str, Any]) -> list[DocumentReference]:
    """Return the index documents a profile gives up when `changed` replaces its phone or email."""
    db = clients.firestore()
    return [
        db.collection(_INDEXES[field][0]).document(record[field])
        for field in _INDEXES
        if field in changed and record.get(field) and changed[field] != record[field]
    ]


def create_profile(
    user_id: str,
    record: dict[str, Any],
    also: list[tuple[DocumentReference, dict[str, Any]]],
    extra_creates: list[tuple[DocumentReference, dict[str, Any]]],
    extra_updates: list[tuple[DocumentReference, dict[str, Any]]] | None = None,
) -> None:
    """Write a new profile with its phone and email claims, atomically.

    Args:
        user_id: The new user.
        record: The whole profile.
        also: Documents of other owners to merge in the same commit.
        extra_creates: Documents of other owners to create in the same commit.
        extra_updates: Existing documents to update in the same commit (increments).

    Raises:
        Conflict: The profile exists, or its phone or email is taken.
    """

    def decide(current: dict[str, Any] | None) -> Plan[None]:
        if is_profile(current):
            raise Conflict("User already exists")
        wanted = {"phone": record.get("phone"), "email": record.get("email")}
        return Plan(
            None,
            update=record,
            also_set=also,
            creates=claims(user_id, wanted) + extra_creates,
            updates=list(extra_updates or []),
        )

    write_if_unchanged(user_ref(user_id), decide)


def update_profile(user_id: str, change: Any) -> dict[str, Any]:
    """Apply `change(record) -> dict of field paths` to a profile, with index upkeep, atomically.

    `change` may raise a domain error to refuse. A new phone or email is
    claimed and the old one released in the same commit. A new `profilePic`
    (or none) drops the face analysis of the old picture in the same commit
    (`metadata.picture_data`, which holds inferred gender and race, and
    `pictureAnalysis`), unless the change sets `metadata.picture_data` itself.

    Returns:
        The profile as written.

    Raises:
        NotFound: No such profile.
        Conflict: The new phone or email is taken.
    """

    def decide(current: dict[str, Any] | None) -> Plan[dict[str, Any]]:
        if not is_profile(current):
            raise NotFound("User not found")
        assert current is not None
        changes = change(current)
        changes["metadata.last_updated_ts"] = datetime.now(UTC)
        if changes.get("profilePic", current.get("profilePic")) != current.get("profilePic"):
            changes.setdefault("metadata.picture_data", None)
            changes["pictureAnalysis"] = None
        wanted = {field: changes.get(field) for field in _INDEXES if field in changes}
        return Plan(
            _apply(current, changes),
            update=changes,
            creates=claims(user_id, {k: v for k, v in wanted.items() if v != current.get(k)}),
            deletes=releases(current, changes),
        )

    return write_if_unchanged(user_ref(user_id), decide)


def _apply(record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = {**record, "metadata": dict(record.get("metadata") or {})}
    for path, value in changes.items():
        if path.startswith("metadata."):
            result["metadata"][path.removeprefix("metadata.")] = value
        else:
            result[path] = value
    return result


def elo_updates(deltas: dict[str, int]) -> list[tuple[DocumentReference, dict[str, Any]]]:
    """Return the `updates` that move users' Elo by `deltas` (atomic increments)."""
    from google.cloud import firestore

    return [
        (user_ref(user_id), {"elo": firestore.Increment(delta)})
        for user_id, delta in deltas.items()
        if delta
    ]


def augmentation_increment(user_id: str, counter: str) -> tuple[DocumentReference, dict[str, Any]]:
    """Return the `updates` entry that adds one to `metadata.augmentation.{counter}` (atomic).

    An increment carries no precondition, so concurrent tasks never contend;
    the caller makes it count once by committing it with a uniqueness claim.
    """
    from google.cloud import firestore

    return user_ref(user_id), {f"metadata.augmentation.{counter}": firestore.Increment(1)}


def update_augmentation(
    user_id: str, run_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> dict[str, Any] | None:
    """Change fields of a user's `metadata.augmentation` if it is still the run `run_id`.

    Args:
        user_id: The augmented user.
        run_id: The run the caller works for.
        change: Maps the current augmentation to the fields to set (None: nothing).

    Returns:
        The augmentation as written (or as found when nothing changed); None
        when the profile is gone or another run replaced this one.
    """

    def decide(current: dict[str, Any] | None) -> Plan[dict[str, Any] | None]:
        run = ((current or {}).get("metadata") or {}).get("augmentation") or {}
        if not is_profile(current) or run.get("runId") != run_id:
            return Plan(None)
        changes = change(dict(run))
        if not changes:
            return Plan(run)
        return Plan(
            {**run, **changes},
            update={f"metadata.augmentation.{key}": value for key, value in changes.items()},
        )

    return write_if_unchanged(user_ref(user_id), decide)


def set_picture(user_id: str, url: str | None) -> None:
    """Point a profile's `profilePic` at one of its checked images (or clear it).

    Raises:
        NotFound: No such profile.
    """
    update_profile(user_id, lambda record: {"profilePic": url})


def store_picture_analysis(
    user_id: str, proxy_url: str, object_key: str, result: PictureData
) -> PictureData | None:
    """Store face analysis of a profile's picture once per object generation.

    Returns:
        The stored result, or None when the profile no longer shows that
        picture or this generation was already analysed.
    """

    def store(current: dict[str, Any] | None) -> Plan[PictureData | None]:
        if not is_profile(current) or (current or {}).get("profilePic") != proxy_url:
            return Plan(None)
        assert current is not None
        if (current.get("pictureAnalysis") or {}).get("object") == object_key:
            return Plan(None)
        return Plan(
            result,
            update={
                "metadata.picture_data": result.model_dump(mode="python"),
                "pictureAnalysis": {"object": object_key, "analyzedAt": datetime.now(UTC)},
            },
        )

    return write_if_unchanged(user_ref(user_id), store)


def is_archetype(record: dict[str, Any]) -> bool:
    """Tell whether a profile is an archetype (a person from someone's network, not a user).

    Archetypes are written by LinkedIn augmentation with `metadata.archetype`
    and `metadata.referredBy` (their creator); only admins may set either.
    """
    return (record.get("metadata") or {}).get("archetype") is True


def archetype_owner(record: dict[str, Any]) -> str | None:
    """Return the user who created an archetype (None: not an archetype, or no creator named)."""
    return (record.get("metadata") or {}).get("referredBy") if is_archetype(record) else None


def analysed_object(record: dict[str, Any]) -> str | None:
    """Return the key of the object whose analysis a profile holds, if any."""
    return (record.get("pictureAnalysis") or {}).get("object")


def _referred(user_id: str) -> Iterator[list[tuple[DocumentReference, bool]]]:
    """The users whose `metadata.referredBy` is `user_id`, each with whether it is an archetype.

    In batches of `MAX_PAGE`, each read after the previous one was handled.
    """
    query = erasure.belonging_to(USERS, user_id, field="metadata.referredBy")
    for batch in batches(query):
        yield [(found.reference, is_archetype(found.to_dict() or {})) for found in batch]


def created_archetypes(user_id: str, limit: int | None = None) -> Iterator[str]:
    """The ids of the archetype users made from a user's network (the first `limit`, if given)."""
    ids = (ref.id for batch in _referred(user_id) for ref, archetype in batch if archetype)
    return itertools.islice(ids, limit)


def forget_referrer(user_id: str, tombstone: str) -> None:
    """Replace a deleted user's id by `tombstone` in the real users they referred."""
    for found in _referred(user_id):
        referred = [ref for ref, archetype in found if not archetype]
        if referred:
            batch = clients.firestore().batch()
            for ref in referred:
                batch.update(ref, {"metadata.referredBy": tombstone})
            batch.commit()


def delete_user_data(user_id: str) -> None:
    """Delete a profile and the phone and email index entries it holds (re-runnable).

    The index entries go first, so a profile is never left without a way to
    find and delete its entries again.
    """
    for collection, _ in _INDEXES.values():
        erasure.delete_matching(erasure.belonging_to(collection, user_id))
    user_ref(user_id).delete()


def export_user_data(user_id: str, limit: int) -> dict[str, Any]:
    """Return a user's profile and the (first `limit`) archetype users made from their network."""
    archetypes = load_many(list(created_archetypes(user_id, limit)))
    return {
        "profile": user_ref(user_id).get().to_dict(),
        "archetypes": [archetypes[key] for key in sorted(archetypes)],
    }
