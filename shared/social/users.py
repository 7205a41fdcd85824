"""Social user profiles: the seed's User, with ownership and uniqueness rules.

Documents live in `users/{userId}`. Phone numbers and emails are unique,
enforced by index documents `user_phones/{e164}` and `user_emails/{email}`
written in the same transaction as the user (a second claim fails).

Who may change what: users edit their own profile; `elo`, `metadata.notes`,
`metadata.archetype`, `metadata.linkedin_info`, `metadata.picture_data` and
`roles` are written only by admins or the system (a user sending back the
stored value is fine; a different value is refused with 403). A user may set
their phone only to the number they verified; admins may set any.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from shared.platform import clients
from shared.platform.auth import AUTH_TOKENS, USER_PHONES, USERS, Principal, require_self_or_admin
from shared.platform.errors import Conflict, Forbidden, InvalidInput, NotFound
from shared.platform.transactions import run_in_transaction
from shared.social import photos
from shared.social.phone_auth import normalize_phone

USER_EMAILS = "user_emails"
DEFAULT_ELO = 1600
SYSTEM_METADATA = ("notes", "archetype", "linkedin_info", "picture_data")

_Strict = ConfigDict(extra="forbid")


class Name(BaseModel):
    """A person's name."""

    model_config = _Strict

    first: str = Field(default="", max_length=100)
    last: str = Field(default="User", max_length=100)


class WarmConnect(BaseModel):
    """Someone in the user's network."""

    model_config = _Strict

    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    timeSpent: float = Field(ge=0)  # noqa: N815 - the seed's field name


class Label(BaseModel):
    """A predicted label with its confidence."""

    label: str
    confidence: float


class PictureData(BaseModel):
    """Face analysis of the profile picture."""

    face_detected: bool = False
    gender: Label | None = None
    race: Label | None = None
    analyzed_at: datetime | None = None
    error: str | None = None
    region: dict[str, int] | None = None  # the face box in pixels: x, y, w, h
    missing_attributes: list[str] | None = None  # configured attributes without model weights


class Notes(BaseModel):
    """Scores and moderation notes kept by admins and the system."""

    aiScore: int = 10  # noqa: N815 - the seed's field name
    userScore: int = 10  # noqa: N815 - the seed's field name
    text: str = ""
    flagged: bool = False


class LinkedinInfo(BaseModel):
    """What LinkedIn augmentation found."""

    url: str | None = None
    content: dict[str, Any] | None = None


class Metadata(BaseModel):
    """Profile metadata."""

    created_ts: datetime
    last_updated_ts: datetime
    notes: Notes = Field(default_factory=Notes)
    archetype: bool = False
    referredBy: str | None = None  # noqa: N815 - the seed's field name
    linkedin_info: LinkedinInfo | None = None
    network: list[WarmConnect] = Field(default_factory=list)
    picture_data: PictureData | None = None


class User(BaseModel):
    """A user of the social app."""

    userId: str  # noqa: N815 - the seed's field name
    phone: str | None = None
    email: str | None = None
    name: Name = Field(default_factory=Name)
    bio: str | None = None
    age: int | None = None
    location: str | None = None
    profilePic: str | None = None  # noqa: N815 - the seed's field name
    color: str | None = None
    elo: int = DEFAULT_ELO
    metadata: Metadata
    sender: str | None = None


class PublicUser(BaseModel):
    """What anyone may see of a user."""

    userId: str  # noqa: N815 - the seed's field name
    name: Name
    bio: str | None = None
    age: int | None = None
    location: str | None = None
    profilePic: str | None = None  # noqa: N815 - the seed's field name
    color: str | None = None


class _ProfileFields(BaseModel):
    model_config = _Strict

    phone: str | None = Field(default=None, max_length=32)
    email: EmailStr | None = None
    name: Name | None = None
    bio: str | None = Field(default=None, max_length=2000)
    age: int | None = Field(default=None, ge=13, le=120)
    location: str | None = Field(default=None, max_length=200)
    profilePic: str | None = Field(default=None, max_length=2048)  # noqa: N815
    color: str | None = Field(default=None, max_length=32)


class CreateMetadata(BaseModel):
    """Metadata a new user may come with."""

    model_config = _Strict

    archetype: bool = False
    referredBy: str | None = Field(default=None, max_length=128)  # noqa: N815
    network: list[WarmConnect] = Field(default_factory=list, max_length=500)
    picture_data: PictureData | None = None


class CreateUserRequest(_ProfileFields):
    """User data for a new user."""

    metadata: CreateMetadata = Field(default_factory=CreateMetadata)


class UpdateMetadata(BaseModel):
    """Metadata fields an update may carry (timestamps are the server's)."""

    model_config = _Strict

    created_ts: datetime | None = None
    last_updated_ts: datetime | None = None
    notes: Notes | None = None
    archetype: bool | None = None
    referredBy: str | None = Field(default=None, max_length=128)  # noqa: N815
    linkedin_info: LinkedinInfo | None = None
    network: list[WarmConnect] | None = Field(default=None, max_length=500)
    picture_data: PictureData | None = None


class UpdateUserRequest(_ProfileFields):
    """A partial update: only the fields sent are changed."""

    userId: str | None = None  # noqa: N815 - the seed's field name
    elo: int | None = None
    metadata: UpdateMetadata | None = None
    sender: str | None = Field(default=None, max_length=64)
    roles: list[str] | None = None


class PhoneExists(BaseModel):
    """Whether a phone number is registered."""

    exists: bool


class EmailExists(BaseModel):
    """Whether an email is registered, and by whom."""

    exists: bool
    userId: str | None = None  # noqa: N815 - the seed's field name
    hasCompleteProfile: bool = False  # noqa: N815 - the seed's field name


def _users() -> Any:
    return clients.firestore().collection(USERS)


def _normalize_email(email: str) -> str:
    return email.strip().lower()


def load_user(user_id: str) -> dict[str, Any]:
    """Return a user document.

    Args:
        user_id: The user.

    Returns:
        The stored fields.

    Raises:
        NotFound: There is no such user.
    """
    record = _users().document(user_id).get().to_dict()
    if record is None:
        raise NotFound("User not found")
    return dict(record)


def to_user(record: dict[str, Any]) -> User:
    """Shape a stored document as the seed's User (private fields dropped)."""
    return User.model_validate({k: v for k, v in record.items() if k in User.model_fields})


def has_complete_profile(record: dict[str, Any]) -> bool:
    """A profile is complete when it has a first name, bio, age, location and picture."""
    name = record.get("name") or {}
    required = (name.get("first"), record.get("bio"), record.get("age"), record.get("location"))
    return all(required) and bool(record.get("profilePic"))


def create_user(principal: Principal, body: CreateUserRequest) -> User:
    """Create a user, claiming its phone and email, and bind the caller's phone token.

    Phone-token callers create their own user with their verified phone;
    Firebase callers create the user whose id is their uid; admins may create
    any user.

    Args:
        principal: The caller.
        body: The new user's data.

    Returns:
        The created user.

    Raises:
        Conflict: The caller already has a user, or the phone or email is taken.
        Forbidden: A non-admin set a system field or another phone.
        InvalidInput: The phone number is invalid.
    """
    from google.cloud import firestore

    phone = normalize_phone(body.phone) if body.phone else None
    if not principal.is_admin:
        if principal.user_id and _users().document(principal.user_id).get().exists:
            raise Conflict("User already exists")
        if body.metadata.archetype or body.metadata.picture_data is not None:
            raise Forbidden("Only admins may set archetype or picture data")
        if phone not in (None, principal.phone):
            raise Forbidden("Phone must be the verified phone")
        if principal.kind == "phone":
            phone = principal.phone
    own_uid = principal.kind == "firebase" and not principal.is_admin
    user_id = principal.subject if own_uid else str(uuid.uuid4())
    pending = photos.pending_upload(principal, user_id, body.profilePic)
    email = _normalize_email(str(body.email)) if body.email else None
    if principal.kind == "firebase" and not principal.is_admin and principal.email:
        email = email or principal.email
    now = datetime.now(UTC)
    record: dict[str, Any] = {
        "userId": user_id,
        "phone": phone,
        "email": email,
        "name": (body.name or Name()).model_dump(),
        "bio": body.bio,
        "age": body.age,
        "location": body.location,
        "profilePic": body.profilePic,
        "color": body.color,
        "elo": DEFAULT_ELO,
        "metadata": {
            **body.metadata.model_dump(mode="python"),
            "created_ts": now,
            "last_updated_ts": now,
            "notes": Notes().model_dump(),
            "linkedin_info": None,
        },
        "sender": None,
        "roles": [],
    }
    if principal.kind == "firebase" and not principal.is_admin:
        record["firebaseUid"] = principal.subject
    db = clients.firestore()
    user_ref = db.collection(USERS).document(user_id)
    token_ref = (
        db.collection(AUTH_TOKENS).document(principal.subject)
        if principal.kind == "phone" and not principal.is_admin
        else None
    )

    def create(transaction: firestore.Transaction) -> str | None:
        claims = _claims(db, transaction, user_id, phone, email)
        if user_ref.get(transaction=transaction).exists:
            return "User already exists"
        for _, taken in claims:
            if taken:
                return taken
        transaction.create(user_ref, record)
        for ref, _ in claims:
            transaction.create(ref, {"userId": user_id})
        if token_ref is not None:
            transaction.update(token_ref, {"userId": user_id})
        return None

    conflict = run_in_transaction(create)
    if conflict:
        raise Conflict(conflict)
    if pending is not None:
        record["profilePic"] = set_profile_picture(user_id, photos.adopt_pending(user_id, pending))
    return to_user(record)


def set_profile_picture(user_id: str, url: str) -> str:
    """Point a user's `profilePic` at an image URL.

    Returns:
        The URL.

    Raises:
        NotFound: No such user.
    """
    from google.api_core import exceptions as google_exceptions

    try:
        _users().document(user_id).update(
            {"profilePic": url, "metadata.last_updated_ts": datetime.now(UTC)}
        )
    except google_exceptions.NotFound as exc:
        raise NotFound("User not found") from exc
    return url


def _claims(
    db: Any, transaction: Any, user_id: str, phone: str | None, email: str | None
) -> list[tuple[Any, str | None]]:
    """Read the uniqueness index documents a user would claim.

    Returns:
        Each index reference with a conflict message when another user holds it.
    """
    wanted = []
    if phone:
        wanted.append((db.collection(USER_PHONES).document(phone), "Phone number already in use"))
    if email:
        wanted.append((db.collection(USER_EMAILS).document(email), "Email already in use"))
    claims = []
    for ref, message in wanted:
        holder = (ref.get(transaction=transaction).to_dict() or {}).get("userId")
        claims.append((ref, message if holder not in (None, user_id) else None))
    return claims


def get_user(principal: Principal, user_id: str) -> User:
    """Return a user to themself or an admin.

    Raises:
        Forbidden: The caller is someone else.
        NotFound: There is no such user.
    """
    require_self_or_admin(principal, user_id)
    return to_user(load_user(user_id))


def public_profile(user_id: str) -> PublicUser:
    """Return the public fields of a user.

    Raises:
        NotFound: There is no such user.
    """
    record = load_user(user_id)
    return PublicUser.model_validate(
        {k: v for k, v in record.items() if k in PublicUser.model_fields}
    )


def user_id_by_phone(phone: str) -> str | None:
    """Return the user holding an E.164 number, if any."""
    owner = clients.firestore().collection(USER_PHONES).document(phone).get().to_dict()
    return (owner or {}).get("userId")


def get_user_by_phone(principal: Principal, raw_phone: str) -> User:
    """Return the user with a phone number, to that user or an admin.

    Non-admins may only look up their own verified number, so the answer
    never tells them whether someone else's number is registered.

    Raises:
        Forbidden: The number is not the caller's.
        NotFound: No user has this number.
        InvalidInput: The number is invalid.
    """
    phone = normalize_phone(raw_phone, loc=("path", "phone_number"))
    if not principal.is_admin:
        own = principal.phone or (
            load_user(principal.user_id).get("phone") if principal.user_id else None
        )
        if phone != own:
            raise Forbidden("Not allowed to access this user")
    user_id = user_id_by_phone(phone)
    if user_id is None:
        raise NotFound("User not found")
    return to_user(load_user(user_id))


def phone_exists(raw_phone: str) -> PhoneExists:
    """Tell whether a phone number is registered."""
    return PhoneExists(
        exists=user_id_by_phone(normalize_phone(raw_phone, ("query", "phone"))) is not None
    )


def email_exists(email: str) -> EmailExists:
    """Tell whether an email is registered, by whom, and if that profile is complete."""
    holder = (
        clients.firestore()
        .collection(USER_EMAILS)
        .document(_normalize_email(email))
        .get()
        .to_dict()
    )
    user_id = (holder or {}).get("userId")
    if user_id is None:
        return EmailExists(exists=False)
    record = _users().document(user_id).get().to_dict() or {}
    return EmailExists(exists=True, userId=user_id, hasCompleteProfile=has_complete_profile(record))


def update_user(principal: Principal, user_id: str, body: UpdateUserRequest) -> User:
    """Apply a partial update to a user.

    Args:
        principal: The caller (the user or an admin).
        user_id: The user to change.
        body: The fields to change; unset fields stay as they are.

    Returns:
        The updated user.

    Raises:
        Forbidden: Not the caller's profile, or a system field would change.
        Conflict: The new phone or email belongs to someone else.
        InvalidInput: `userId` in the body differs from the path.
        NotFound: There is no such user.
    """
    from google.cloud import firestore

    require_self_or_admin(principal, user_id)
    if body.userId is not None and body.userId != user_id:
        raise InvalidInput("userId does not match the path", loc=("body", "userId"))
    sent = body.model_dump(exclude_unset=True, mode="python")
    sent.pop("userId", None)
    metadata = sent.pop("metadata", None) or {}
    metadata.pop("created_ts", None)
    metadata.pop("last_updated_ts", None)
    changes: dict[str, Any] = dict(sent)
    changes.update({f"metadata.{key}": value for key, value in metadata.items()})
    if "phone" in changes and changes["phone"] is not None:
        changes["phone"] = normalize_phone(changes["phone"])
    if "email" in changes and changes["email"] is not None:
        changes["email"] = _normalize_email(changes["email"])
    db = clients.firestore()
    user_ref = db.collection(USERS).document(user_id)

    def apply(transaction: firestore.Transaction) -> dict[str, Any]:
        current = user_ref.get(transaction=transaction).to_dict()
        if current is None:
            raise NotFound("User not found")
        _check_allowed(principal, current, changes)
        claims = _claims(
            db,
            transaction,
            user_id,
            changes.get("phone") if changes.get("phone") != current.get("phone") else None,
            changes.get("email") if changes.get("email") != current.get("email") else None,
        )
        for _, taken in claims:
            if taken:
                raise Conflict(taken)
        now = datetime.now(UTC)
        transaction.update(user_ref, {**changes, "metadata.last_updated_ts": now})
        for ref, _ in claims:
            transaction.set(ref, {"userId": user_id})
        for field, collection in (("phone", USER_PHONES), ("email", USER_EMAILS)):
            if field in changes and current.get(field) and changes[field] != current[field]:
                transaction.delete(db.collection(collection).document(current[field]))
        return current

    run_in_transaction(apply)
    return to_user(load_user(user_id))


def _check_allowed(principal: Principal, current: dict[str, Any], changes: dict[str, Any]) -> None:
    if principal.is_admin:
        return
    stored_metadata = current.get("metadata") or {}
    system = {"elo": current.get("elo"), "roles": current.get("roles") or []}
    system.update({f"metadata.{key}": stored_metadata.get(key) for key in SYSTEM_METADATA})
    for field, stored in system.items():
        if field in changes and not _same(changes[field], stored):
            raise Forbidden(f"Only admins may change {field}")
    if "phone" in changes and changes["phone"] not in (current.get("phone"), principal.phone):
        raise Forbidden("Phone must be the verified phone")


def _same(sent: Any, stored: Any) -> bool:
    if isinstance(sent, dict) and isinstance(stored, dict):
        keys = set(sent) | set(stored)
        return all(_same(sent.get(key), stored.get(key)) for key in keys)
    return bool(sent == stored)
