"""Social user profiles: the seed's User, with ownership, uniqueness and reference rules.

Profiles live in `users/{userId}`, written only through
`shared.social.user_store` (phone and email uniqueness are claims made in
the same atomic commit). The agent-platform account is a separate document
(`accounts/{userId}`), so either can exist without the other.

Who may change what:
- users edit their own profile; `elo`, `roles`, `metadata.notes`,
  `metadata.archetype`, `metadata.referredBy`, `metadata.linkedin_info` and
  `metadata.picture_data` are written only by admins or the system (sending
  back the stored value is fine; a different value is refused with 403);
  `metadata.augmentation` (augmentation progress) only by the system: an
  update carrying it is accepted and the field left as it is;
- a phone may only be the caller's verified phone, and an email only the
  caller's verified email (the Firebase token's `email_verified`); admins
  may set any;
- `profilePic` names one of our cleaned images that belongs to the user;
- fields the User model does not allow to be null (name, metadata, network,
  notes...) refuse null with 422 rather than storing it.

A new user created with `metadata.referredBy` (an existing user who is not
an archetype) gets a referral match with the referrer, unconfirmed until the
referrer takes part (see `shared.social.matches`), which close-loop can
later settle.

What a throwaway account can do cheaply is limited per 24 hours, for
non-admins (429 with `Retry-After` beyond; `shared.platform.ratelimit`):
profiles created per phone number (`PROFILES_PER_PHONE_PER_DAY`) and per
client address (`PROFILES_PER_IP_PER_DAY`), and referral matches claimed
per client address (`REFERRALS_PER_IP_PER_DAY`) and per referrer
(`REFERRALS_PER_REFERRER_PER_DAY`). A refused creation creates nothing
(the hits counted before the refusal stay counted).

Archetypes (`metadata.archetype`, made by LinkedIn augmentation from a
user's network, `metadata.referredBy` naming that creator) are about people
who never signed up: their public profile is 404 to everyone, only their
creator (and admins) may read them (`GET /users/{id}`), and they never hold
a phone or email (refused even for admins), so phone and email lookups can
never find one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, EmailStr, Field, field_validator

from shared.platform import ratelimit
from shared.platform.auth import Principal, require_self_or_admin
from shared.platform.config import get_settings
from shared.platform.errors import Conflict, Forbidden, InvalidInput, NotFound
from shared.platform.models import Model, NoNulls
from shared.platform.values import DocId, StorableMap
from shared.social import matches, photos, user_store
from shared.social.phone_auth import bind_token_write, normalize_phone
from shared.social.profile_types import ObjectRef, PictureData
from shared.social.user_store import DEFAULT_ELO

_DAY = timedelta(days=1)
SYSTEM_METADATA = ("notes", "archetype", "referredBy", "linkedin_info", "picture_data")

_Strict = ConfigDict(extra="forbid", allow_inf_nan=False)


class Name(NoNulls):
    """A person's name."""

    model_config = _Strict

    first: str = Field(default="", max_length=100)
    last: str = Field(default="User", max_length=100)


class WarmConnect(NoNulls):
    """Someone in the user's network."""

    model_config = _Strict

    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    timeSpent: float = Field(ge=0, le=1e9)  # noqa: N815 - the seed's field name


class Notes(NoNulls):
    """Scores and moderation notes kept by admins and the system."""

    model_config = _Strict

    aiScore: int = Field(default=10, ge=-1_000_000, le=1_000_000)  # noqa: N815 - seed name
    userScore: int = Field(default=10, ge=-1_000_000, le=1_000_000)  # noqa: N815 - seed name
    text: str = Field(default="", max_length=10_000)
    flagged: bool = False


class LinkedinInfo(Model):
    """What LinkedIn augmentation found."""

    model_config = _Strict

    url: str | None = Field(default=None, max_length=2048)
    content: StorableMap | None = None


class Augmentation(Model):
    """Progress of the latest LinkedIn augmentation (`POST /users/{id}/augment`).

    Written only by the system: updates that carry it are ignored. `total`
    counts tasks (the user's own enrichment plus one per contact); `done`
    and `failed` count the finished ones.
    """

    runId: str  # noqa: N815 - API field name
    status: Literal["queued", "completed", "completed_with_errors", "stopped", "failed"]
    total: int
    done: int = 0
    failed: int = 0
    requested_at: datetime
    finished_at: datetime | None = None
    enrichment: str | None = None  # the user's own lookup: matched, no_match, not_configured...
    error: str | None = None  # why the run stopped or failed


class Metadata(Model):
    """Profile metadata."""

    created_ts: datetime
    last_updated_ts: datetime
    notes: Notes = Field(default_factory=Notes)
    archetype: bool = False
    referredBy: str | None = None  # noqa: N815 - the seed's field name
    linkedin_info: LinkedinInfo | None = None
    network: list[WarmConnect] = Field(default_factory=list)
    picture_data: PictureData | None = None
    augmentation: Augmentation | None = None


class User(Model):
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


class PublicUser(Model):
    """What anyone may see of a user."""

    userId: str  # noqa: N815 - the seed's field name
    name: Name
    bio: str | None = None
    age: int | None = None
    location: str | None = None
    profilePic: str | None = None  # noqa: N815 - the seed's field name
    color: str | None = None


class _ProfileFields(NoNulls):
    model_config = _Strict
    nullable: ClassVar[frozenset[str]] = frozenset(
        {"phone", "email", "bio", "age", "location", "profilePic", "color", "sender"}
    )

    phone: str | None = Field(default=None, max_length=32)
    email: EmailStr | None = Field(default=None, max_length=320)
    name: Name | None = None
    bio: str | None = Field(default=None, max_length=2000)
    age: int | None = Field(default=None, ge=13, le=120)
    location: str | None = Field(default=None, max_length=200)
    profilePic: str | None = Field(default=None, max_length=2048)  # noqa: N815
    color: str | None = Field(default=None, max_length=32)

    @field_validator("email")
    @classmethod
    def _storable_email(cls, value: str | None) -> str | None:
        # Emails key the `user_emails` index: a `/` would name a sub-collection.
        if value is not None and "/" in value:
            raise ValueError("an email address with '/' is not accepted")
        return value.strip().lower() if value is not None else None


class CreateMetadata(NoNulls):
    """Metadata a new user may come with."""

    model_config = _Strict
    nullable: ClassVar[frozenset[str]] = frozenset({"referredBy", "picture_data"})

    archetype: bool = False
    referredBy: DocId | None = None  # noqa: N815
    network: list[WarmConnect] = Field(default_factory=list, max_length=500)
    picture_data: PictureData | None = None


class CreateUserRequest(_ProfileFields):
    """User data for a new user."""

    metadata: CreateMetadata = Field(default_factory=CreateMetadata)


class UpdateMetadata(NoNulls):
    """Metadata fields an update may carry (timestamps are the server's)."""

    model_config = _Strict
    nullable: ClassVar[frozenset[str]] = frozenset(
        {"referredBy", "linkedin_info", "picture_data", "augmentation"}
    )

    created_ts: datetime | None = None
    last_updated_ts: datetime | None = None
    notes: Notes | None = None
    archetype: bool | None = None
    referredBy: DocId | None = None  # noqa: N815
    linkedin_info: LinkedinInfo | None = None
    network: list[WarmConnect] | None = Field(default=None, max_length=500)
    picture_data: PictureData | None = None
    augmentation: StorableMap | None = None  # accepted back from clients, never written


class UpdateUserRequest(_ProfileFields):
    """A partial update: only the fields sent are changed."""

    userId: DocId | None = None  # noqa: N815 - the seed's field name
    elo: int | None = Field(default=None, ge=0, le=10_000)
    metadata: UpdateMetadata | None = None
    sender: str | None = Field(default=None, max_length=64)
    roles: list[str] | None = Field(default=None, max_length=20)


class PhoneExists(Model):
    """Whether a phone number is registered."""

    exists: bool


class EmailExists(Model):
    """Whether an email is registered; the holder is named only to themself or an admin."""

    exists: bool
    userId: str | None = None  # noqa: N815 - the seed's field name
    hasCompleteProfile: bool = False  # noqa: N815 - the seed's field name


def to_user(record: dict[str, Any]) -> User:
    """Shape a stored document as the seed's User (private fields dropped)."""
    return User.model_validate({k: v for k, v in record.items() if k in User.model_fields})


def has_complete_profile(record: dict[str, Any]) -> bool:
    """A profile is complete when it has a first name, bio, age, location and picture."""
    name = record.get("name") or {}
    required = (name.get("first"), record.get("bio"), record.get("age"), record.get("location"))
    return all(required) and bool(record.get("profilePic"))


def new_profile_record(user_id: str, **fields: Any) -> dict[str, Any]:
    """A new profile document with the seed's defaults.

    Args:
        user_id: The new user.
        **fields: Top-level fields to set; `metadata` is merged into the default metadata.

    Returns:
        The whole document, timestamps set to now.
    """
    now = datetime.now(UTC)
    metadata = {
        **CreateMetadata().model_dump(mode="python"),
        "notes": Notes().model_dump(),
        "linkedin_info": None,
        **fields.pop("metadata", {}),
        "created_ts": now,
        "last_updated_ts": now,
    }
    defaults: dict[str, Any] = {
        "phone": None,
        "email": None,
        "name": Name().model_dump(),
        "bio": None,
        "age": None,
        "location": None,
        "profilePic": None,
        "color": None,
        "elo": DEFAULT_ELO,
        "sender": None,
        "roles": [],
    }
    return {"userId": user_id, **defaults, **fields, "metadata": metadata}


def _check_email(principal: Principal, email: str | None) -> None:
    if email is None or principal.is_admin:
        return
    if not (principal.email_verified and principal.email == email):
        raise Forbidden("Only your verified email may be set")


def _no_archetype_contacts(archetype: bool, phone: str | None, email: str | None) -> None:
    if archetype and (phone or email):
        raise InvalidInput("An archetype holds no phone or email", ("body", "metadata"))


def _own_contacts(principal: Principal, body: CreateUserRequest) -> tuple[str | None, str | None]:
    """Return the new user's phone and email after the rules for non-admin creators."""
    phone = normalize_phone(body.phone) if body.phone else None
    email = body.email
    if not principal.is_admin:
        if principal.user_id and user_store.exists(principal.user_id):
            raise Conflict("User already exists")
        if body.metadata.archetype or body.metadata.picture_data is not None:
            raise Forbidden("Only admins may set archetype or picture data")
        if phone not in (None, principal.phone):
            raise Forbidden("Phone must be the verified phone")
        if principal.kind == "phone":
            phone = principal.phone
        if email is None and principal.email_verified:
            email = principal.email
    _check_email(principal, email)
    _no_archetype_contacts(body.metadata.archetype, phone, email)
    return phone, email


def create_user(
    principal: Principal, body: CreateUserRequest, client_host: str | None = None
) -> User:
    """Create a user, claiming its phone and email, and bind the caller's phone token.

    Phone-token callers create their own user with their verified phone;
    Firebase callers create the user whose id is their uid; admins may create
    any user.

    Args:
        principal: The caller.
        body: The new user's data.
        client_host: The caller's address, for the per-address limits.

    Returns:
        The created user.

    Raises:
        Conflict: The caller already has a user, or the phone or email is taken.
        Forbidden: A non-admin set a system field, another phone or an unverified email.
        InvalidInput: The phone number is invalid, the referrer is not another
            existing user, or the picture is not one of our images.
        NotFound: The picture does not exist.
        RateLimited: A per-phone, per-address or per-referrer limit applies.
    """
    phone, email = _own_contacts(principal, body)
    own_uid = principal.kind == "firebase" and not principal.is_admin
    user_id = principal.subject if own_uid else str(uuid.uuid4())
    referrer = body.metadata.referredBy
    referral = []
    if referrer is not None:
        found = user_store.load_many([referrer]).get(referrer)
        if referrer == user_id or found is None or user_store.is_archetype(found):
            raise InvalidInput("referredBy must be another existing user", ("body", "metadata"))
        referral = [matches.referral_match(referrer, user_id)]
    if not principal.is_admin:
        _count_creation(phone, client_host, referrer)
    picture = _new_picture(principal, user_id, body.profilePic)
    record = new_profile_record(
        user_id,
        phone=phone,
        email=email,
        name=(body.name or Name()).model_dump(),
        bio=body.bio,
        age=body.age,
        location=body.location,
        profilePic=picture.target.proxy_url if picture else None,
        color=body.color,
        metadata=body.metadata.model_dump(mode="python"),
    )
    if own_uid:
        record["firebaseUid"] = principal.subject
    token = (
        [bind_token_write(principal.subject, user_id)]
        if principal.kind == "phone" and not principal.is_admin
        else []
    )
    try:
        user_store.create_profile(user_id, record, also=token, extra_creates=referral)
    except Conflict:
        if picture and picture.copied:
            photos.delete_object(picture.target)
        raise
    if picture:
        if picture.copied:
            photos.delete_object(picture.source)
        photos.enqueue_analysis(user_id, picture.target, picture.generation)
    return to_user(record)


def _count_creation(phone: str | None, client_host: str | None, referrer: str | None) -> None:
    """Count a non-admin's profile creation (and its referral) against the daily limits."""
    settings = get_settings()
    address = client_host or "unknown"
    profiles, referrals = "Too many profiles created", "Too many referrals"
    limits = [(f"profiles-ip:{address}", settings.profiles_per_ip_per_day, profiles)]
    if phone:
        limits.append((f"profiles-phone:{phone}", settings.profiles_per_phone_per_day, profiles))
    if referrer:
        limits.append((f"referrals-ip:{address}", settings.referrals_per_ip_per_day, referrals))
        limits.append(
            (f"referrals-of:{referrer}", settings.referrals_per_referrer_per_day, referrals)
        )
    for key, limit, message in limits:
        ratelimit.consume(key, limit, _DAY, f"{message} today; try again later")


@dataclass(frozen=True)
class _NewPicture:
    source: ObjectRef
    target: ObjectRef
    generation: int | None

    @property
    def copied(self) -> bool:
        return self.source != self.target


def _new_picture(principal: Principal, user_id: str, profile_pic: str | None) -> _NewPicture | None:
    """Check a new user's picture and copy a pending upload under the user's prefix."""
    if not profile_pic:
        return None
    try:
        source = photos.pending_upload(principal, user_id, profile_pic)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, ("body", "profilePic")) from exc
    target, generation = photos.adopt_pending(user_id, source)
    return _NewPicture(source, target, generation)


def get_user(principal: Principal, user_id: str) -> User:
    """Return a user to themself or an admin, and an archetype to the user who created it.

    Raises:
        Forbidden: The caller is someone else (whether or not the user exists).
        NotFound: There is no such user (self or admin).
    """
    if principal.user_id == user_id or principal.is_admin:
        return to_user(user_store.load(user_id))
    record = user_store.load_many([user_id]).get(user_id) or {}
    if principal.user_id is None or user_store.archetype_owner(record) != principal.user_id:
        raise Forbidden("Not allowed to access this user")
    return to_user(record)


def public_profile(user_id: str) -> PublicUser:
    """Return the public fields of a user (archetypes are never public).

    Raises:
        NotFound: There is no such user, or it is an archetype.
    """
    record = user_store.load(user_id)
    if user_store.is_archetype(record):
        raise NotFound("User not found")
    return PublicUser.model_validate(
        {k: v for k, v in record.items() if k in PublicUser.model_fields}
    )


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
        own = principal.phone
        if own is None and principal.user_id and user_store.exists(principal.user_id):
            own = user_store.load(principal.user_id).get("phone")
        if phone != own:
            raise Forbidden("Not allowed to access this user")
    user_id = user_store.holder("phone", phone)
    if user_id is None:
        raise NotFound("User not found")
    return to_user(user_store.load(user_id))


def phone_exists(raw_phone: str) -> PhoneExists:
    """Tell whether a phone number is registered."""
    phone = normalize_phone(raw_phone, ("query", "phone"))
    return PhoneExists(exists=user_store.holder("phone", phone) is not None)


def email_exists(principal: Principal, email: str) -> EmailExists:
    """Tell whether an email is registered; who holds it only to that user or an admin."""
    user_id = user_store.holder("email", email.strip().lower())
    if user_id is None:
        return EmailExists(exists=False)
    if user_id != principal.user_id and not principal.is_admin:
        return EmailExists(exists=True)
    record = user_store.user_ref(user_id).get().to_dict() or {}
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
        Forbidden: Not the caller's profile, a system field would change, or an
            unverified email or phone.
        Conflict: The new phone or email belongs to someone else, or the
            picture is still being cleaned.
        InvalidInput: `userId` in the body differs from the path, or the
            picture is not one of our images.
        NotFound: There is no such user or picture.
    """
    require_self_or_admin(principal, user_id)
    if body.userId is not None and body.userId != user_id:
        raise InvalidInput("userId does not match the path", loc=("body", "userId"))
    sent = body.model_dump(exclude_unset=True, mode="python")
    sent.pop("userId", None)
    metadata = sent.pop("metadata", None) or {}
    metadata.pop("created_ts", None)
    metadata.pop("last_updated_ts", None)
    metadata.pop("augmentation", None)
    changes: dict[str, Any] = dict(sent)
    changes.update({f"metadata.{key}": value for key, value in metadata.items()})
    if changes.get("phone") is not None:
        changes["phone"] = normalize_phone(changes["phone"])
    picture = None
    if changes.get("profilePic") is not None:
        try:
            picture = photos.users_image(principal, user_id, changes["profilePic"])
        except InvalidInput as exc:
            raise InvalidInput(exc.detail, ("body", "profilePic")) from exc
        changes["profilePic"] = picture[0].proxy_url

    def change(current: dict[str, Any]) -> dict[str, Any]:
        _check_allowed(principal, current, changes)
        _no_archetype_contacts(
            changes.get("metadata.archetype", user_store.is_archetype(current)) is True,
            changes.get("phone", current.get("phone")),
            changes.get("email", current.get("email")),
        )
        return dict(changes)

    record = user_store.update_profile(user_id, change)
    if picture is not None:
        photos.enqueue_analysis(user_id, picture[0], picture[1].generation)
    return to_user(record)


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
    if "email" in changes and changes["email"] != current.get("email"):
        _check_email(principal, changes["email"])


def _same(sent: Any, stored: Any) -> bool:
    if isinstance(sent, dict) and isinstance(stored, dict):
        keys = set(sent) | set(stored)
        return all(_same(sent.get(key), stored.get(key)) for key in keys)
    return bool(sent == stored)


_CONTACT_USERS = uuid.UUID("6f1c2a7e-3b8d-4f5a-9c0e-2d4b6a8c1e3f")


def register_contact(contact: str, channel: str) -> str:
    """Return the user holding a phone number or email, registering a bare profile if none does.

    Someone who texts us without being a user gets a profile holding only
    that phone (or email) and `arrival: {channel, at}`, which records how they
    came; no agent-platform account is created. The new id derives from the
    contact, so a repeated registration finds the same user.

    Args:
        contact: An E.164 phone number or an email address.
        channel: How they arrived (for example `imessage`).

    Returns:
        The user id.

    Raises:
        InvalidInput: Neither a valid phone number nor a usable email.
        Conflict: The contact kept changing hands (retry).
    """
    field = "email" if "@" in contact else "phone"
    if field == "email":
        value = contact.strip().lower()
        if "/" in value or len(value) > 320:
            raise InvalidInput("Unusable email address", ("body", "contact"))
    else:
        value = normalize_phone(contact, ("body", "contact"))
    user_id = str(uuid.uuid5(_CONTACT_USERS, f"{field}:{value}"))
    for _attempt in range(3):
        holder = user_store.holder(field, value)
        if holder is not None:
            return holder
        record = new_profile_record(
            user_id,
            phone=value if field == "phone" else None,
            email=value if field == "email" else None,
            arrival={"channel": channel, "at": datetime.now(UTC)},
        )
        try:
            user_store.create_profile(user_id, record, also=[], extra_creates=[])
        except Conflict:
            continue
        return user_id
    raise Conflict("The contact is being registered; retry")
