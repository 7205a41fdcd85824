"""Seed the local stack with a demo user."""

from __future__ import annotations

from datetime import UTC, datetime

from devstack.tokens import LOCAL_PASSWORD, sign_in
from shared.platform import clients


def seed_demo_user(email: str) -> str:
    """Create the demo Auth user and its `users` document (idempotent).

    Args:
        email: The demo user's email.

    Returns:
        The demo user's uid (also its user id).
    """
    user = sign_in(email, LOCAL_PASSWORD)
    now = datetime.now(UTC)
    clients.firestore().collection("users").document(user.uid).set(
        {
            "userId": user.uid,
            "firebaseUid": user.uid,
            "email": email,
            "name": {"first": "Demo", "last": "User"},
            "elo": 1600,
            "metadata": {"created_ts": now, "last_updated_ts": now},
        },
        merge=True,
    )
    return user.uid
