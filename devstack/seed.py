"""Seed the local stack with a demo user whose network is the stand-in's sample people."""

from __future__ import annotations

from devstack.standins.people import CONTACTS
from devstack.tokens import mint_token
from shared.platform.auth import Principal
from shared.platform.errors import Conflict
from shared.social import users


def demo_network() -> list[users.WarmConnect]:
    """The demo user's network: the sample people the People Data Labs stand-in knows."""
    return [
        users.WarmConnect(
            name=person.full_name, email=person.email, timeSpent=person.hours_together
        )
        for person in CONTACTS
    ]


def seed_demo_user(email: str) -> str:
    """Create the demo Auth user (email verified) and its profile, with its network (idempotent).

    The profile is written through `shared.social.users` as the demo user
    itself; when it exists already only its network is set again.

    Args:
        email: The demo user's email.

    Returns:
        The demo user's uid (also its user id).
    """
    account = mint_token(email)
    try:
        users.create_user(
            _as_demo(account.uid, email, user_id=None),
            users.CreateUserRequest(
                name=users.Name(first="Demo", last="User"),
                metadata=users.CreateMetadata(network=demo_network()),
            ),
        )
    except Conflict:
        users.update_user(
            _as_demo(account.uid, email, user_id=account.uid),
            account.uid,
            users.UpdateUserRequest(metadata=users.UpdateMetadata(network=demo_network())),
        )
    return account.uid


def _as_demo(uid: str, email: str, *, user_id: str | None) -> Principal:
    """The demo user as the caller, signed in with its verified email."""
    return Principal(
        kind="firebase", subject=uid, user_id=user_id, email=email, email_verified=True
    )
