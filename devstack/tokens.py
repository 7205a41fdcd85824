"""Mint Firebase ID tokens from the Auth emulator for local users.

Only talks to the Auth emulator (`FIREBASE_AUTH_EMULATOR_HOST`); the REST
calls are the Identity Toolkit ones the web app's SDK makes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import requests
from firebase_admin import auth as firebase_auth

from shared.platform import clients

_KEY = "fake-api-key"  # the emulator accepts any API key
LOCAL_PASSWORD = "local-password"  # noqa: S105 - Auth emulator accounts only


@dataclass(frozen=True)
class LocalUser:
    """A user of the Auth emulator and a fresh ID token for them."""

    uid: str
    email: str
    id_token: str


def _endpoint(method: str) -> str:
    host = os.environ["FIREBASE_AUTH_EMULATOR_HOST"]
    return f"http://{host}/identitytoolkit.googleapis.com/v1/accounts:{method}?key={_KEY}"


def sign_in(email: str, password: str) -> LocalUser:
    """Sign in with email and password, creating the account if it does not exist.

    Args:
        email: The account email.
        password: The account password.

    Returns:
        The user and a fresh ID token (carrying the current custom claims).
    """
    body = {"email": email, "password": password, "returnSecureToken": True}
    response = requests.post(_endpoint("signInWithPassword"), json=body, timeout=10)
    if response.status_code == 400:
        response = requests.post(_endpoint("signUp"), json=body, timeout=10)
    response.raise_for_status()
    data = response.json()
    return LocalUser(uid=data["localId"], email=email, id_token=data["idToken"])


def mint_token(
    email: str, password: str = LOCAL_PASSWORD, *, admin: bool = False, verified: bool = True
) -> LocalUser:
    """Return an ID token for a local user, with the admin claim set or cleared.

    Args:
        email: The account email (created on first use).
        password: The account password.
        admin: Whether the token should carry `admin: true`.
        verified: Whether the email counts as verified (`email_verified` in the token),
            as after the web app's email-link verification.

    Returns:
        The user and an ID token issued after the claims and the verification were set.
    """
    user = sign_in(email, password)
    claims = {"admin": True} if admin else {}
    app = clients.firebase_app()
    firebase_auth.set_custom_user_claims(user.uid, claims, app=app)
    firebase_auth.update_user(user.uid, email_verified=verified, app=app)
    return sign_in(email, password)
