"""Phone sign-in: verification codes and phone session tokens.

A code is 6 digits, stored only as an HMAC (keyed by `PHONE_CODE_SECRET`,
bound to the number), valid for `PHONE_CODE_TTL_SECONDS` (10 minutes), burned
after `PHONE_CODE_MAX_ATTEMPTS` (5) wrong tries and consumed by the right
one. Sending is limited per number (a resend cooldown and an hourly cap) and
per client address (an hourly cap). Numbers listed in `TEST_PHONE_NUMBERS`
get their fixed code and no SMS, like Firebase's fictional numbers: nothing
is sent, so they are exempt from the send limits and the cooldown, but not
from the wrong-attempt limit.

A successful verification issues an opaque session token, stored only as its
SHA-256 in `auth_tokens`, bound to the user with that phone (or to none yet:
`POST /users` binds it when it creates the user).

Retention (Firestore TTL on `expireAt`): a `phone_codes/{phone}` document
goes once its code has expired and its hourly send window has ended (at
most an hour after the last send); an `auth_tokens` document when its
session expires.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from shared.platform import clients, erasure, ratelimit
from shared.platform.auth import AUTH_TOKENS, forget, hash_token
from shared.platform.config import get_settings
from shared.platform.errors import InvalidInput, RateLimited, Unavailable
from shared.platform.models import Model
from shared.platform.transactions import Plan, write_if_unchanged
from shared.social import user_store

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

PHONE_CODES = "phone_codes"
_HOUR = timedelta(hours=1)


class SendCodeRequest(Model):
    """Model for phone verification request."""

    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=3, max_length=32, description="Phone number to verify")


class SendCodeResponse(Model):
    """The answer to a send-code request."""

    success: bool = True
    message: str = "Verification code sent"


class VerifyCodeRequest(Model):
    """A code typed by the user."""

    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=3, max_length=32)
    code: str = Field(pattern=r"^[0-9]{6}$", description="The 6-digit code")


class TokenResponse(Model):
    """Authentication token response."""

    token: str
    user_id: str | None
    expires_in: int


class LogoutRequest(Model):
    """The token to revoke."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=512)


class LogoutResponse(Model):
    """The answer to a logout."""

    success: bool = True


class ValidateResponse(Model):
    """The answer to a token validation."""

    valid: bool
    user_id: str | None


def normalize_phone(raw: str, loc: tuple[str | int, ...] = ("body", "phone")) -> str:
    """Normalise a phone number to E.164.

    Args:
        raw: The number as typed (national numbers use `DEFAULT_PHONE_REGION`).
        loc: Where the number came from, for the error.

    Returns:
        The E.164 form.

    Raises:
        InvalidInput: The number is not a valid phone number.
    """
    import phonenumbers

    try:
        parsed = phonenumbers.parse(raw, get_settings().default_phone_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput("Invalid phone number", loc=loc) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput("Invalid phone number", loc=loc)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _code_hash(phone: str, code: str) -> str:
    secret = get_settings().code_secret()
    return hmac.new(secret, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()


def send_code(raw_phone: str, client_host: str | None) -> SendCodeResponse:
    """Issue a verification code and text it to the number.

    Args:
        raw_phone: The number as typed.
        client_host: The caller's address, for the per-address limit.

    Returns:
        The confirmation.

    Raises:
        InvalidInput: The number is invalid.
        RateLimited: A cooldown or hourly limit applies (`retry_after` says how long);
            never for a test number.
        Unavailable: The SMS could not be sent (no code is left active).
    """
    from google.cloud import firestore

    settings = get_settings()
    phone = normalize_phone(raw_phone)
    fixed_code = settings.test_phone_numbers.get(phone)
    if fixed_code is None:
        ratelimit.consume(
            f"send-code-ip:{client_host or 'unknown'}",
            settings.phone_sends_per_ip_per_hour,
            _HOUR,
            "Too many verification codes requested from this address",
        )
    code = fixed_code or f"{secrets.randbelow(1_000_000):06d}"
    db = clients.firestore()
    ref = db.collection(PHONE_CODES).document(phone)

    def reserve(stored: dict[str, Any] | None) -> Plan[None]:
        now = datetime.now(UTC)
        record = stored or {}
        sent_at = record.get("sentAt")
        cooldown = timedelta(seconds=settings.phone_code_resend_seconds)
        limited = fixed_code is None
        if limited and isinstance(sent_at, datetime) and now - sent_at < cooldown:
            raise RateLimited(
                "Please wait before requesting another code",
                ratelimit.retry_after(sent_at, cooldown, now),
            )
        start, count = ratelimit.window_state(record, now, _HOUR)
        if limited and count >= settings.phone_sends_per_number_per_hour:
            raise RateLimited(
                "Too many codes requested for this number",
                ratelimit.retry_after(start, _HOUR, now),
            )
        expires = now + timedelta(seconds=settings.phone_code_ttl_seconds)
        fresh = {
            "codeHash": _code_hash(phone, code),
            "expiresAt": expires,
            "attempts": 0,
            "sentAt": now,
            "windowStart": start,
            "count": count + 1,
            # Firestore TTL: gone once neither the code nor the hourly send window matters.
            "expireAt": max(expires, start + _HOUR),
        }
        return Plan(None, update=fresh)

    write_if_unchanged(ref, reserve)
    if fixed_code is None:
        try:
            clients.sms().send(phone, f"Your Series verification code is {code}")
        except Unavailable:
            ref.update({"codeHash": firestore.DELETE_FIELD})
            raise
    return SendCodeResponse()


class _Outcome(Enum):
    VALID = "valid"
    NO_CODE = "no_code"
    EXPIRED = "expired"
    WRONG = "wrong"
    BURNED = "burned"


_OUTCOME_MESSAGES = {
    _Outcome.NO_CODE: "No active code for this number; request a new one",
    _Outcome.EXPIRED: "The code has expired; request a new one",
    _Outcome.WRONG: "Incorrect code",
    _Outcome.BURNED: "Too many incorrect attempts; request a new code",
}


def verify_code(raw_phone: str, code: str) -> TokenResponse:
    """Check a code and issue a phone session token.

    Args:
        raw_phone: The number as typed.
        code: The 6 digits.

    Returns:
        The token (shown once), its user (or None) and its lifetime in seconds.

    Raises:
        InvalidInput: Invalid number, or no valid code (wrong, expired, burned).
    """
    from google.cloud import firestore

    settings = get_settings()
    phone = normalize_phone(raw_phone)
    db = clients.firestore()
    code_ref = db.collection(PHONE_CODES).document(phone)
    token = secrets.token_urlsafe(32)
    token_ref = db.collection(AUTH_TOKENS).document(hash_token(token))
    lifetime = settings.session_token_ttl_seconds
    owner = user_store.holder("phone", phone)

    def check(stored: dict[str, Any] | None) -> Plan[_Outcome]:
        now = datetime.now(UTC)
        record = stored or {}
        if not record.get("codeHash"):
            return Plan(_Outcome.NO_CODE)
        if record["expiresAt"] <= now:
            return Plan(_Outcome.EXPIRED, update={"codeHash": firestore.DELETE_FIELD})
        if not hmac.compare_digest(record["codeHash"], _code_hash(phone, code)):
            attempts = int(record.get("attempts", 0)) + 1
            if attempts >= settings.phone_code_max_attempts:
                burned = {"codeHash": firestore.DELETE_FIELD, "attempts": attempts}
                return Plan(_Outcome.BURNED, update=burned)
            return Plan(_Outcome.WRONG, update={"attempts": attempts})
        session = {
            "userId": owner,
            "phone": phone,
            "createdAt": now,
            "expiresAt": now + timedelta(seconds=lifetime),
            "revoked": False,
            "expireAt": now + timedelta(seconds=lifetime),  # Firestore TTL
        }
        consumed = {"codeHash": firestore.DELETE_FIELD, "attempts": 0}
        return Plan(_Outcome.VALID, update=consumed, creates=[(token_ref, session)])

    # A compare-and-set on the code document: concurrent guesses each count,
    # and none waits on a transaction lock.
    outcome = write_if_unchanged(code_ref, check)
    if outcome is not _Outcome.VALID:
        raise InvalidInput(_OUTCOME_MESSAGES[outcome], loc=("body", "code"))
    return TokenResponse(token=token, user_id=owner, expires_in=lifetime)


def bind_token_write(token_hash: str, user_id: str) -> tuple[DocumentReference, dict[str, Any]]:
    """Return the write that binds a phone session token to the user it created.

    Args:
        token_hash: The token's stored key (the principal's subject).
        user_id: The new user.

    Returns:
        A merge write for the same commit as the user's creation.
    """
    return clients.firestore().collection(AUTH_TOKENS).document(token_hash), {"userId": user_id}


def logout(token: str) -> LogoutResponse:
    """Revoke a phone session token (unknown tokens are accepted silently).

    Args:
        token: The token to revoke.

    Returns:
        The confirmation.
    """
    from google.api_core import exceptions as google_exceptions

    ref = clients.firestore().collection(AUTH_TOKENS).document(hash_token(token))
    with contextlib.suppress(google_exceptions.NotFound):
        ref.update({"revoked": True, "revokedAt": datetime.now(UTC)})
    forget(token)
    return LogoutResponse()


def _user_tokens(user_id: str, phone: str | None) -> list[Any]:
    """The queries finding a user's tokens: bound to them, or issued for their phone."""
    queries = [erasure.belonging_to(AUTH_TOKENS, user_id)]
    if phone:
        queries.append(erasure.belonging_to(AUTH_TOKENS, phone, field="phone"))
    return queries


def session_keys(user_id: str, phone: str | None, limit: int) -> list[str]:
    """Return the stored keys (hashes) of a user's phone session tokens (`limit` per query)."""
    return sorted(
        {
            snapshot.id
            for query in _user_tokens(user_id, phone)
            for snapshot in query.limit(limit).stream()
        }
    )


def revoke_user_tokens(user_id: str, phone: str | None) -> list[str]:
    """Delete every phone session token of a user: bound to them, or issued for their phone.

    Args:
        user_id: The user.
        phone: Their phone number (E.164), if they have one.

    Returns:
        The stored keys (hashes) of the deleted tokens.
    """
    return [key for query in _user_tokens(user_id, phone) for key in erasure.delete_matching(query)]


def delete_user_data(user_id: str, phone: str | None) -> None:
    """Delete a user's phone session tokens and the code record of their phone (re-runnable)."""
    revoke_user_tokens(user_id, phone)
    if phone:
        clients.firestore().collection(PHONE_CODES).document(phone).delete()


def export_user_data(user_id: str, phone: str | None, limit: int) -> dict[str, Any]:
    """Return a user's phone sessions (without the tokens) and their phone's code record."""
    sessions: dict[str, dict[str, Any]] = {}
    for query in _user_tokens(user_id, phone):
        for snapshot in query.limit(limit).stream():
            record = snapshot.to_dict() or {}
            sessions[snapshot.id] = {
                key: record.get(key) for key in ("phone", "createdAt", "expiresAt", "revoked")
            }
    code = None
    if phone:
        stored = clients.firestore().collection(PHONE_CODES).document(phone).get().to_dict()
        if stored is not None:
            code = {key: value for key, value in stored.items() if key != "codeHash"}
    return {"phoneSessions": list(sessions.values())[:limit], "phoneCode": code}
