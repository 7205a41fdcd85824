"""Matches between two users, closing the loop on an introduction, and Elo.

A pair of users has at most one match, `matches/{a}__{b}` with the two ids
sorted. Matches exist only where an introduction was made: a `referral`
match when a user is created with `metadata.referredBy` (the referrer and
the new user), and `archetype` matches from LinkedIn augmentation.

No user's word alone changes another user's rating:

- a referral is claimed by the referred user alone (anyone may name anyone
  in `metadata.referredBy`), so it starts `confirmed: false`, with
  `claimedBy` the new user. It counts only once the referrer has taken part:
  by confirming it (`POST /users/{referrerId}/referrals/{referredId}/confirm`,
  `confirm_referral`) or by closing the loop on it themself. Until then the
  referred user's close-loop is refused (409) and writes nothing: no
  outcome, no rating, no notification. Matches stored before this rule
  carry no `confirmed` and count as unconfirmed;
- an archetype match is between a user and a person made up from their own
  network, private to that user: only its creator (or an admin) closes it,
  and the ratings it moves are the creator's own and their archetype's;
  how many archetypes a user can make is bounded by their network and
  `AUGMENTATIONS_PER_USER_PER_DAY`;
- admins may close any match, confirmed or not, and their outcome counts.

Closing the loop (`POST /users/close-loop`) records how the introduction of
`sourceId` to `targetId` ended; only a party to the match or an admin may
report it, and only for a match that exists (404 otherwise). A match with an
archetype is private to the archetype's creator: anyone else, admins
included, gets 404 for it.

- `accepted`: the target accepted; a win for the source, a loss for the target;
- `declined`: the target declined; a loss for the source, a win for the target;
- `no_response`, `cancelled`: recorded, Elo unchanged.

For a win or a loss of a rated match (a confirmed referral, any referral
an admin closes, or an archetype match) both users' Elo moves by the standard formula: with
expected score `E = 1 / (1 + 10 ** ((R_target - R_source) / 400))` and score
`S` (1 or 0), the source gains `round(K * (S - E))` and the target loses the
same (`K` is `ELO_K_FACTOR`, 32). The close is one compare-and-set commit on
the match (the ratings move by atomic increments in the same commit), so it
applies once however often it is repeated; repeating the same close returns
the stored result, a different outcome for a closed match is a 409. When the
match records a referrer with a phone, an iMessage notification to that
referrer (and nobody else) is recorded in `notifications/{matchId}-referrer`
with status `pending`; `ref_phone`/`ref_email`, when given, must name that
referrer. The notification is then queued on `agent-replies`, whose worker
sends it over iMessage (`claim_notification`, `finish_notification`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, EmailStr, Field, field_validator, model_validator

from shared.platform import clients, erasure, tasks
from shared.platform.auth import Principal
from shared.platform.config import get_settings
from shared.platform.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from shared.platform.models import Model
from shared.platform.transactions import Plan, write_if_unchanged
from shared.platform.values import DocId
from shared.social import user_store
from shared.social.phone_auth import normalize_phone
from shared.social.user_store import DEFAULT_ELO

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

logger = logging.getLogger(__name__)

MATCHES = "matches"
NOTIFICATIONS = "notifications"
NOTIFY_QUEUE = "agent-replies"
NotificationStatus = Literal["pending", "sent", "retry", "failed", "unconfirmed"]
Outcome = Literal["accepted", "declined", "no_response", "cancelled"]
_SCORES: dict[str, float] = {"accepted": 1.0, "declined": 0.0}


class CloseLoopQuery(Model):
    """Who introduced whom, and who referred the introduction."""

    model_config = ConfigDict(extra="forbid")

    ref_phone: str = Field(default="", max_length=32)
    ref_email: EmailStr | None = None
    sourceId: DocId  # noqa: N815 - the seed's parameter name
    targetId: DocId  # noqa: N815 - the seed's parameter name

    @field_validator("ref_email", mode="before")
    @classmethod
    def _empty_email_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class CloseLoopBody(Model):
    """The outcome, plus any other string details to keep with the match."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Annotated[str, Field(max_length=2000)]] = Field(init=False)

    outcome: Outcome

    @model_validator(mode="after")
    def _storable_details(self) -> CloseLoopBody:
        details = self.model_extra or {}
        if len(details) > 20 or any(not key or key.startswith("__") for key in details):
            raise ValueError("at most 20 details, with non-empty keys not starting with __")
        return self


class ReferralConfirmed(Model):
    """A referral match its referrer has confirmed."""

    matchId: str  # noqa: N815 - API field name
    referrerId: str  # noqa: N815 - API field name
    referredId: str  # noqa: N815 - API field name
    status: Literal["open", "closed"]
    confirmed: Literal[True]


class CloseLoopResult(Model):
    """The closed match."""

    matchId: str  # noqa: N815 - API field name
    sourceId: str  # noqa: N815 - API field name
    targetId: str  # noqa: N815 - API field name
    status: Literal["closed"]
    outcome: Outcome
    eloChange: dict[str, int]  # noqa: N815 - API field name
    notification: Literal["pending", "none"]


def match_id(first: str, second: str) -> str:
    """Return the id of the match between two users (order does not matter)."""
    return "__".join(sorted((first, second)))


def _match_ref(first: str, second: str) -> DocumentReference:
    return clients.firestore().collection(MATCHES).document(match_id(first, second))


def referral_match(referrer_id: str, user_id: str) -> tuple[DocumentReference, dict[str, Any]]:
    """Return the `create` of the referral match a new user claims with a referrer.

    The match is unconfirmed (`confirmed: false`, `claimedBy` the new user)
    until the referrer confirms it or closes the loop on it.

    Args:
        referrer_id: The existing user named in `metadata.referredBy`.
        user_id: The new user.

    Returns:
        The match document and its content, for the new user's commit.
    """
    ref, match = _new_match(referrer_id, user_id, "referral", None)
    return ref, {**match, "confirmed": False, "claimedBy": user_id}


def archetype_match(
    user_id: str, archetype_id: str, probability: float
) -> tuple[DocumentReference, dict[str, Any]]:
    """Return the `create` of the match between a user and an archetype made from their network.

    Args:
        user_id: The augmented user (the archetype's `referredBy`).
        archetype_id: The archetype user.
        probability: The model's estimate that the introduction works, 0 to 1.

    Returns:
        The match document and its content, for the archetype's commit.
    """
    return _new_match(user_id, archetype_id, "archetype", probability)


def _new_match(
    referrer_id: str, other_id: str, source: str, probability: float | None
) -> tuple[DocumentReference, dict[str, Any]]:
    """An open match between the referrer and another user, recording the referrer."""
    return _match_ref(referrer_id, other_id), {
        "matchId": match_id(referrer_id, other_id),
        "users": sorted((referrer_id, other_id)),
        "source": source,
        "referrer": {"userId": referrer_id},
        "probability": probability,
        "status": "open",
        "createdAt": datetime.now(UTC),
    }


def _referrer_of(match: dict[str, Any]) -> str | None:
    return (match.get("referrer") or {}).get("userId")


def _unconfirmed_referral(match: dict[str, Any]) -> bool:
    """A referral the referrer has not taken part in yet (older matches count as such)."""
    return match.get("source") == "referral" and match.get("confirmed") is not True


def confirm_referral(principal: Principal, referrer_id: str, referred_id: str) -> ReferralConfirmed:
    """Confirm, as its referrer, a referral match another user claimed (idempotent).

    Args:
        principal: The referrer, or an admin.
        referrer_id: The user named in the new user's `metadata.referredBy`.
        referred_id: The user who named them.

    Returns:
        The confirmed match.

    Raises:
        Forbidden: The caller is not the referrer (nor an admin).
        NotFound: No referral match between the two with `referrer_id` as its referrer.
    """
    if principal.user_id != referrer_id and not principal.is_admin:
        raise Forbidden("Only the referrer may confirm a referral")
    if referrer_id == referred_id:
        raise NotFound("No referral between these users")

    def confirm(match: dict[str, Any] | None) -> Plan[dict[str, Any]]:
        if match is None or match.get("source") != "referral" or _referrer_of(match) != referrer_id:
            raise NotFound("No referral between these users")
        if match.get("confirmed") is True:
            return Plan(match)
        changes = {"confirmed": True, "confirmedAt": datetime.now(UTC)}
        return Plan({**match, **changes}, update=changes)

    match = write_if_unchanged(_match_ref(referrer_id, referred_id), confirm)
    return ReferralConfirmed(
        matchId=str(match["matchId"]),
        referrerId=referrer_id,
        referredId=referred_id,
        status="closed" if match.get("status") == "closed" else "open",
        confirmed=True,
    )


def elo_delta(source_elo: float, target_elo: float, score: float, k_factor: float) -> int:
    """Return the source's Elo change (the target's is its negation).

    Args:
        source_elo: The source's rating.
        target_elo: The target's rating.
        score: 1 for a source win, 0 for a loss.
        k_factor: The K factor.

    Returns:
        The rounded change.
    """
    expected = 1 / (1 + 10 ** ((target_elo - source_elo) / 400))
    return round(k_factor * (score - expected))


def close_loop(
    principal: Principal,
    *,
    source_id: str,
    target_id: str,
    outcome: Outcome,
    details: dict[str, str],
    referrer: tuple[str | None, str | None] = (None, None),
) -> CloseLoopResult:
    """Close the existing match between source and target (see the module docstring).

    Args:
        principal: A party to the match, or an admin.
        source_id: Who was introduced.
        target_id: To whom.
        outcome: How it ended.
        details: Other string details to keep with the match.
        referrer: The referrer's phone (as typed) and email the client believes
            in; when given they must match the referrer recorded on the match.

    Returns:
        The stored result (the same on every repetition).

    Raises:
        Forbidden: The caller is neither party nor admin.
        NotFound: No match between the two, one of them does not exist, or one
            is an archetype the caller did not create.
        Conflict: The match was already closed with another outcome, or it is
            a referral its referrer has not confirmed and the caller is the
            referred user.
        InvalidInput: Source equals target, the referrer phone is invalid, or the
            referrer given is not the one on the match.
    """
    if source_id == target_id:
        raise InvalidInput("sourceId and targetId must differ", loc=("query", "targetId"))
    if not principal.is_admin and principal.user_id not in (source_id, target_id):
        raise Forbidden("Only a party to the match may close it")
    ref_phone = normalize_phone(referrer[0], ("query", "ref_phone")) if referrer[0] else None
    k_factor = get_settings().elo_k_factor
    ref = _match_ref(source_id, target_id)

    def close(match: dict[str, Any] | None) -> Plan[dict[str, Any]]:
        if match is None:
            raise NotFound("No introduction between these users")
        profiles = user_store.load_many([source_id, target_id])
        if any(
            user_store.is_archetype(profile)
            and user_store.archetype_owner(profile) != principal.user_id
            for profile in profiles.values()
        ):
            raise NotFound("No introduction between these users")
        if match.get("status") == "closed":
            if match.get("outcome") != outcome:
                raise Conflict(f"Match already closed as {match.get('outcome')}")
            return Plan(match)
        if len(profiles) < 2:
            raise NotFound("User not found")
        by_referrer = principal.user_id == _referrer_of(match)
        if _unconfirmed_referral(match) and not (by_referrer or principal.is_admin):
            raise Conflict("The referrer has not confirmed this introduction yet")
        notify_phone = _referrer_phone(match, ref_phone, referrer[1])
        delta = 0
        if outcome in _SCORES and match.get("source") in ("referral", "archetype"):
            source_elo = profiles[source_id].get("elo", DEFAULT_ELO)
            target_elo = profiles[target_id].get("elo", DEFAULT_ELO)
            delta = elo_delta(source_elo, target_elo, _SCORES[outcome], k_factor)
        now = datetime.now(UTC)
        closed = {
            "sourceId": source_id,
            "targetId": target_id,
            "confirmed": True,
            "status": "closed",
            "outcome": outcome,
            "details": details,
            "eloChange": {source_id: delta, target_id: -delta},
            "closedAt": now,
            "closedBy": principal.user_id,
            "notification": "pending" if notify_phone else "none",
        }
        notifications = []
        if notify_phone:
            notice = {
                "channel": "imessage",
                "to": notify_phone,
                "matchId": match["matchId"],
                "outcome": outcome,
                "status": "pending",
                "createdAt": now,
            }
            notifications.append((_notification_ref(match["matchId"]), notice))
        return Plan(
            {**match, **closed},
            update=closed,
            updates=user_store.elo_updates({source_id: delta, target_id: -delta}),
            also_set=notifications,
        )

    stored = write_if_unchanged(ref, close)
    if stored.get("notification") == "pending":
        _queue_notification(str(stored["matchId"]))
    return CloseLoopResult.model_validate(stored)


def _queue_notification(mid: str) -> None:
    """Queue the referrer's notification for sending (a failure leaves it pending)."""
    try:
        tasks.enqueue(
            NOTIFY_QUEUE, {"notificationId": f"{mid}-referrer"}, dedup_name=f"notify-{mid}"
        )
    except Unavailable:
        logger.warning("referrer notification not queued; it stays pending")


def claim_notification(notification_id: str) -> dict[str, Any] | None:
    """Take a referrer notification for sending: `pending` or `retry` becomes `sending`.

    Args:
        notification_id: `{matchId}-referrer`.

    Returns:
        The notification, or None when it is not waiting to be sent (absent,
        sent, failed, or being sent by a worker that may have died: never twice).
    """
    ref = clients.firestore().collection(NOTIFICATIONS).document(notification_id)

    def claim(current: dict[str, Any] | None) -> Plan[dict[str, Any] | None]:
        if current is None or current.get("status") not in ("pending", "retry"):
            return Plan(None)
        changes = {"status": "sending", "attemptAt": datetime.now(UTC)}
        return Plan({**current, **changes}, update=changes)

    return write_if_unchanged(ref, claim)


def finish_notification(
    notification_id: str,
    status: NotificationStatus,
    *,
    message_id: str | None = None,
    error_code: int | None = None,
) -> None:
    """Record how sending a claimed notification ended (`pending` hands it back unsent)."""
    ref = clients.firestore().collection(NOTIFICATIONS).document(notification_id)
    ref.set(
        {
            "status": status,
            "messageId": message_id,
            "errorCode": error_code,
            "updatedAt": datetime.now(UTC),
        },
        merge=True,
    )


def _referrer_phone(
    match: dict[str, Any], ref_phone: str | None, ref_email: str | None
) -> str | None:
    """Return the phone of the referrer recorded on the match, checking what the client sent."""
    referrer_id = (match.get("referrer") or {}).get("userId")
    profile = user_store.load_many([referrer_id]).get(referrer_id, {}) if referrer_id else {}
    if ref_phone and ref_phone != profile.get("phone"):
        raise InvalidInput("ref_phone is not the referrer of this match", ("query", "ref_phone"))
    if ref_email and ref_email.lower() != profile.get("email"):
        raise InvalidInput("ref_email is not the referrer of this match", ("query", "ref_email"))
    phone = profile.get("phone")
    return str(phone) if phone else None


def _notification_ref(mid: str) -> DocumentReference:
    return clients.firestore().collection(NOTIFICATIONS).document(f"{mid}-referrer")


def record_notification_delivery(notification_id: str, status: str, error_code: int | None) -> bool:
    """Record what LoopMessage reported about a sent notification (sent, delivered, failed...).

    Returns:
        Whether such a notification exists.
    """
    ref = clients.firestore().collection(NOTIFICATIONS).document(notification_id)
    if not ref.get().exists:
        return False
    delivery = {"status": status, "errorCode": error_code, "at": datetime.now(UTC)}
    ref.set({"delivery": delivery}, merge=True)
    return True


def _replace_id(value: Any, old: str, new: str) -> Any:
    """`value` with every string and key equal to the id `old` replaced by `new`."""
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {_replace_id(k, old, new): _replace_id(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_id(item, old, new) for item in value]
    return value


def _matches_of(user_id: str) -> Any:
    from google.cloud.firestore import FieldFilter

    return (
        clients.firestore()
        .collection(MATCHES)
        .where(filter=FieldFilter("users", "array_contains", user_id))
    )


def delete_user_data(user_id: str, tombstone: str, *, purge: bool = False) -> None:
    """Take a deleted user out of every match they are a party to (re-runnable).

    A match keeps the other party's side: it moves to the pair (other,
    `tombstone`) with the deleted id replaced by the tombstone wherever it
    stands alone (a referrer naming them included). With `purge` (archetype
    users) the matches are deleted instead. Referrer notifications of the
    match go, whoever they were addressed to. A match that changes while it
    is moved (a close-loop at that moment) is read again and moved as it now is.

    Args:
        user_id: The deleted user.
        tombstone: The id that stands for them from now on (see `shared.platform.erasure`).
        purge: Delete the matches rather than keep the other side.
    """
    from google.api_core.exceptions import FailedPrecondition

    db = clients.firestore()
    while snapshots := list(_matches_of(user_id).limit(erasure.BATCH // 3).stream()):
        batch = db.batch()
        for snapshot in snapshots:
            match = snapshot.to_dict() or {}
            batch.delete(_notification_ref(snapshot.id))
            unchanged = db.write_option(last_update_time=snapshot.update_time)
            batch.delete(snapshot.reference, option=unchanged)
            if purge:
                continue
            kept = _replace_id(match, user_id, tombstone)
            others = [other for other in kept.get("users") or [] if other != tombstone]
            if (match.get("referrer") or {}).get("userId") == user_id:
                kept["referrer"] = None
            new_id = match_id(others[0] if others else tombstone, tombstone)
            kept["matchId"] = new_id
            batch.set(db.collection(MATCHES).document(new_id), kept)
        try:
            batch.commit()
        except FailedPrecondition:
            logger.info("A match changed while it was moved; reading it again")


def export_user_data(user_id: str, phone: str | None, limit: int) -> dict[str, Any]:
    """Return the matches a user is a party to and the referrer notifications sent to them.

    Notifications to the other party (their phone) are not the user's data and stay out.
    """
    db = clients.firestore()
    found = [snapshot.to_dict() or {} for snapshot in _matches_of(user_id).limit(limit).stream()]
    refs = [_notification_ref(str(match.get("matchId"))) for match in found]
    notices = [snapshot.to_dict() or {} for snapshot in db.get_all(refs) if snapshot.exists]
    return {
        "matches": found,
        "notifications": [n for n in notices if phone and n.get("to") == phone] if refs else [],
    }
