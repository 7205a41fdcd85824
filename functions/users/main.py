"""The `users` function: profiles, lookups and closing the loop on matches."""

from __future__ import annotations

from pydantic import ConfigDict, EmailStr, Field

from shared.platform.http import RequestContext, Router, http_function
from shared.platform.models import Model
from shared.privacy import api
from shared.social import augment, matches
from shared.social import users as profiles

router = Router("users")
_PRIVATE = {403: "Forbidden", 404: "Not Found"}


class PhoneQuery(Model):
    """The `phone` query parameter."""

    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=3, max_length=32, description="Phone number to check")


class EmailQuery(Model):
    """The `email` query parameter."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(description="Email address to check")


@router.get(
    "/users/check-phone",
    auth="user",
    summary="Check Phone Exists",
    query=PhoneQuery,
    response=profiles.PhoneExists,
)
def check_phone(ctx: RequestContext, query: PhoneQuery) -> profiles.PhoneExists:
    """Check if a phone number already exists."""
    return profiles.phone_exists(query.phone)


@router.get(
    "/users/check-email",
    auth="user",
    summary="Check Email Exists",
    query=EmailQuery,
    response=profiles.EmailExists,
)
def check_email(ctx: RequestContext, query: EmailQuery) -> profiles.EmailExists:
    """Check if an email address already exists (who holds it: only to that user or admins)."""
    return profiles.email_exists(ctx.user, str(query.email))


@router.post(
    "/users/close-loop",
    auth="user",
    summary="Close Loop",
    query=matches.CloseLoopQuery,
    body=matches.CloseLoopBody,
    response=matches.CloseLoopResult,
    responses={**_PRIVATE, 409: "Conflict"},
    max_body_bytes=8192,
)
def close_loop(
    ctx: RequestContext, query: matches.CloseLoopQuery, body: matches.CloseLoopBody
) -> matches.CloseLoopResult:
    """Record how an existing introduction ended and update both users' Elo once."""
    return matches.close_loop(
        ctx.user,
        source_id=query.sourceId,
        target_id=query.targetId,
        outcome=body.outcome,
        details=dict(body.model_extra or {}),
        referrer=(query.ref_phone or None, str(query.ref_email) if query.ref_email else None),
    )


@router.post(
    "/users",
    auth="user",
    summary="Create New User",
    body=profiles.CreateUserRequest,
    response=profiles.User,
    status_code=201,
    responses={403: "Forbidden", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests"},
)
def create_user(ctx: RequestContext, body: profiles.CreateUserRequest) -> profiles.User:
    """Create a new user (a phone token is bound to the user it creates)."""
    return profiles.create_user(ctx.user, body, ctx.client_host)


@router.get(
    "/users/phone/{phone_number}",
    auth="user",
    summary="Get User By Phone Number",
    response=profiles.User,
    responses=_PRIVATE,
)
def get_user_by_phone(ctx: RequestContext, phone_number: str) -> profiles.User:
    """Retrieve a user by their phone number (self or admin)."""
    return profiles.get_user_by_phone(ctx.user, phone_number)


@router.post(
    "/users/{user_id:id}/augment",
    auth="user",
    summary="Augment User",
    response=profiles.User,
    responses={
        **_PRIVATE,
        409: "Conflict",
        429: "Too Many Requests",
        503: "Service Unavailable",
    },
)
def augment_user(ctx: RequestContext, user_id: str) -> profiles.User:
    """Queue LinkedIn augmentation: the user's own data, and archetype users from their network."""
    return augment.request_augmentation(ctx.user, user_id)


@router.post(
    "/users/{user_id:id}/referrals/{referred_id:id}/confirm",
    auth="user",
    summary="Confirm Referral",
    response=matches.ReferralConfirmed,
    responses=_PRIVATE,
)
def confirm_referral(
    ctx: RequestContext, user_id: str, referred_id: str
) -> matches.ReferralConfirmed:
    """Confirm, as the referrer, that you referred this user: their match then counts."""
    return matches.confirm_referral(ctx.user, user_id, referred_id)


@router.get(
    "/users/{user_id:id}/public",
    auth="none",
    summary="Get Public User Profile",
    response=profiles.PublicUser,
    responses={404: "Not Found"},
)
def get_public_profile(ctx: RequestContext, user_id: str) -> profiles.PublicUser:
    """Retrieve a user's public profile (no token needed; archetypes are never public)."""
    return profiles.public_profile(user_id)


@router.get(
    "/users/{user_id:id}",
    auth="user",
    summary="Get User By Id",
    response=profiles.User,
    responses=_PRIVATE,
)
def get_user(ctx: RequestContext, user_id: str) -> profiles.User:
    """Retrieve a user by id (self or admin; an archetype also to the user who created it)."""
    return profiles.get_user(ctx.user, user_id)


@router.put(
    "/users/{user_id:id}",
    auth="user",
    summary="Update User By Id",
    body=profiles.UpdateUserRequest,
    response=profiles.User,
    responses={**_PRIVATE, 409: "Conflict"},
)
def update_user(
    ctx: RequestContext, user_id: str, body: profiles.UpdateUserRequest
) -> profiles.User:
    """Update a user's data (self or admin; system fields admin only)."""
    return profiles.update_user(ctx.user, user_id, body)


@router.delete(
    "/users/{user_id:id}",
    auth="admin",
    summary="Delete User By Id",
    response=api.DeletionAccepted,
    status_code=202,
    responses={403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"},
)
def delete_user(ctx: RequestContext, user_id: str) -> api.DeletionAccepted:
    """Delete a user's account and every piece of their data (admin; see DELETE /users/me)."""
    from shared.privacy import deletion  # reaches both halves: loaded when asked for

    return deletion.delete_user(user_id)


users = http_function(router)
