"""The gofannon web UI's sign-in probes: `GET /auth/providers` and `GET /auth/me`.

The UI's login page asks `/auth/providers` which sign-in to offer: server
session providers (none here) and whether Firebase sign-in is in use (always:
web users sign in with Firebase and send its ID token). Its account menu
reads `/auth/me`, the signed-in identity in the UI's shape, for the bearer
token the request carries (Firebase ID token or phone session token).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.platform.auth import Principal
from shared.platform.models import Model

_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class SignInProvider(Model):
    """A server-side sign-in provider the login page would render a button for."""

    model_config = _CAMEL

    type: str
    display_name: str
    icon: str | None = None


class SignInProviders(Model):
    """`GET /auth/providers`: no server session providers; Firebase sign-in in use."""

    model_config = _CAMEL

    providers: list[SignInProvider] = Field(
        default_factory=list, description="Always empty: there are no server-side sessions"
    )
    legacy_firebase_enabled: bool = Field(
        default=True, description="Firebase sign-in is how web users sign in"
    )


class Workspace(Model):
    """A workspace membership (none here: there are no provider-derived workspaces)."""

    model_config = _CAMEL

    id: str
    role: str


class SignedInUser(Model):
    """`GET /auth/me`: who the bearer token belongs to, in the UI's shape."""

    model_config = _CAMEL

    uid: str = Field(description="The user id (the Firebase uid for web users)")
    display_name: str
    email: str | None = None
    provider_type: str = Field(description="`firebase` or `phone`: the kind of token")
    workspaces: list[Workspace] = Field(default_factory=list)
    is_site_admin: bool = False


def providers() -> SignInProviders:
    """What the login page should offer: Firebase sign-in only."""
    return SignInProviders()


def me(principal: Principal) -> SignedInUser:
    """The signed-in identity of a request's bearer token."""
    uid = principal.user_id or (principal.subject if principal.kind == "firebase" else "")
    return SignedInUser(
        uid=uid,
        display_name=principal.email or principal.phone or uid,
        email=principal.email,
        provider_type=principal.kind,
        is_site_admin=principal.is_admin,
    )
