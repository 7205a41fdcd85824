"""Matches between two users, closing the loop on an introduction, and Elo.

A pair of users has at most one match, `matches/{a}__{b}` with the two ids
sorted, whether it came from archetype generation or from a referral.

Closing the loop (`POST /users/close-loop`) records how an introduction of
`sourceId` to `targetId` ended:

- `accepted`: the target accepted; a win for the source, a loss for the target;
- `declined`: the target declined; a loss for the source, a win for the target;
- `no_response`, `cancelled`: recorded, Elo unchanged.

For a win or a loss both users' Elo moves by the standard formula: with
expected score `E = 1 / (1 + 10 ** ((R_target - R_source) / 400))` and score
`S` (1 or 0), the source gains `round(K * (S - E))` and the target loses the
same (`K` is `ELO_K_FACTOR`, 32). The whole close runs in one transaction:
the match is created as a `referral` match if none exists, its outcome,
referrer and Elo change are stored, and repeating the same close returns the
stored result without changing anything (a different outcome for a closed
match is a 409). When `ref_phone` is given, an iMessage notification to the
referrer is recorded in `notifications/{matchId}-referrer` with status
`pending`, for the LoopMessage sender to deliver.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from shared.platform import clients
from shared.platform.auth import USERS, Principal
from shared.platform.config import get_settings
from shared.platform.errors import Conflict, Forbidden, InvalidInput, NotFound
from shared.platform.transactions import run_in_transaction
from shared.social.phone_auth import normalize_phone

MATCHES = "matches"
NOTIFICATIONS = "notifications"
Outcome = Literal["accepted", "declined", "no_response", "cancelled"]
_SCORES: dict[str, float] = {"accepted": 1.0, "declined": 0.0}
_ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


class CloseLoopQuery(BaseModel):
    """Who introduced whom, and who referred the introduction."""

    model_config = ConfigDict(extra="forbid")

    ref_phone: str = Field(default="", max_length=32)
    ref_email: EmailStr | None = None
    sourceId: str = _ID  # noqa: N815 - the seed's parameter name
    targetId: str = _ID  # noqa: N815 - the seed's parameter name

    @field_validator("ref_email", mode="before")
    @classmethod
    def _empty_email_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class CloseLoopBody(BaseModel):
    """The outcome, plus any other string details to keep with the match."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str] = Field(init=False)

    outcome: Outcome


class CloseLoopResult(BaseModel):
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


def close_loop(principal: Principal, query: CloseLoopQuery, body: CloseLoopBody) -> CloseLoopResult:
    """Close the match between source and target (see the module docstring).

    Args:
        principal: A party to the match, or an admin.
        query: Source, target and referrer.
        body: The outcome and details.

    Returns:
        The stored result (the same on every repetition).

    Raises:
        Forbidden: The caller is neither party nor admin.
        NotFound: Source or target does not exist.
        Conflict: The match was already closed with another outcome.
        InvalidInput: Source equals target, or the referrer phone is invalid.
    """
    from google.cloud import firestore

    source_id, target_id = query.sourceId, query.targetId
    if source_id == target_id:
        raise InvalidInput("sourceId and targetId must differ", loc=("query", "targetId"))
    if not principal.is_admin and principal.user_id not in (source_id, target_id):
        raise Forbidden("Only a party to the match may close it")
    ref_phone = (
        normalize_phone(query.ref_phone, ("query", "ref_phone")) if query.ref_phone else None
    )
    k_factor = get_settings().elo_k_factor
    db = clients.firestore()
    mid = match_id(source_id, target_id)
    match_ref = db.collection(MATCHES).document(mid)
    source_ref = db.collection(USERS).document(source_id)
    target_ref = db.collection(USERS).document(target_id)
    notification_ref = db.collection(NOTIFICATIONS).document(f"{mid}-referrer")

    def close(transaction: firestore.Transaction) -> dict[str, Any]:
        match = match_ref.get(transaction=transaction).to_dict()
        source = source_ref.get(transaction=transaction).to_dict()
        target = target_ref.get(transaction=transaction).to_dict()
        if source is None or target is None:
            raise NotFound("User not found")
        if match and match.get("status") == "closed":
            if match.get("outcome") != body.outcome:
                raise Conflict(f"Match already closed as {match.get('outcome')}")
            return match
        now = datetime.now(UTC)
        delta = 0
        if body.outcome in _SCORES:
            delta = elo_delta(
                source.get("elo", 1600), target.get("elo", 1600), _SCORES[body.outcome], k_factor
            )
            transaction.update(source_ref, {"elo": source.get("elo", 1600) + delta})
            transaction.update(target_ref, {"elo": target.get("elo", 1600) - delta})
        closed = {
            "matchId": mid,
            "users": sorted((source_id, target_id)),
            "sourceId": source_id,
            "targetId": target_id,
            "source": (match or {}).get("source", "referral"),
            "probability": (match or {}).get("probability"),
            "createdAt": (match or {}).get("createdAt", now),
            "status": "closed",
            "outcome": body.outcome,
            "details": body.model_extra or {},
            "referrer": {"phone": ref_phone, "email": query.ref_email},
            "eloChange": {source_id: delta, target_id: -delta},
            "closedAt": now,
            "closedBy": principal.user_id,
            "notification": "pending" if ref_phone else "none",
        }
        transaction.set(match_ref, closed)
        if ref_phone:
            transaction.set(
                notification_ref,
                {
                    "channel": "imessage",
                    "to": ref_phone,
                    "matchId": mid,
                    "outcome": body.outcome,
                    "status": "pending",
                    "createdAt": now,
                },
            )
        return closed

    stored = run_in_transaction(close)
    return CloseLoopResult.model_validate(stored, from_attributes=False)
