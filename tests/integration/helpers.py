"""Helpers shared by the integration tests: signing up through the real API."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import requests

_numbers = itertools.count(1000)


def random_number() -> str:
    """A valid US number in the 555 exchange, unique within the test session."""
    return f"+1201555{next(_numbers):04d}"


@dataclass
class SignedUp:
    user_id: str
    phone: str | None
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def phone_token(stack, phone: str) -> dict:
    sent = requests.post(stack.url("/auth/send-code"), json={"phone": phone}, timeout=10)
    assert sent.status_code == 200, sent.text
    verified = requests.post(
        stack.url("/auth/verify-code"),
        json={"phone": phone, "code": stack.twilio.last_code(phone)},
        timeout=10,
    )
    assert verified.status_code == 200, verified.text
    return verified.json()


def sign_up(stack, **profile) -> SignedUp:
    """Sign in by phone and create the user, as the app does."""
    phone = random_number()
    token = phone_token(stack, phone)["token"]
    created = requests.post(
        stack.url("/users"),
        json={"name": {"first": "Test"}, **profile},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return SignedUp(user_id=created.json()["userId"], phone=phone, token=token)


def web_sign_up(stack, email: str, *, verified: bool = True, **profile) -> SignedUp:
    """Sign in with Firebase (the web app) and create the user under the uid."""
    from devstack.tokens import mint_token

    user = mint_token(email, verified=verified)
    created = requests.post(
        stack.url("/users"),
        json={"name": {"first": "Web"}, **profile},
        headers={"Authorization": f"Bearer {user.id_token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return SignedUp(user_id=user.uid, phone=None, token=user.id_token)


def confirm_referral(
    stack, referrer: SignedUp, referred: SignedUp, caller: SignedUp | None = None
) -> requests.Response:
    """The referrer (or `caller`) confirms the referral the referred user claimed."""
    return requests.post(
        stack.url(f"/users/{referrer.user_id}/referrals/{referred.user_id}/confirm"),
        headers=(caller or referrer).headers,
        timeout=10,
    )


def introduced(stack) -> tuple[SignedUp, SignedUp]:
    """Two users with a confirmed referral match: the second was referred by the first."""
    alice = sign_up(stack)
    bob = sign_up(stack, metadata={"referredBy": alice.user_id})
    confirmed = confirm_referral(stack, alice, bob)
    assert confirmed.status_code == 200, confirmed.text
    return alice, bob


def run_token(
    user_id: str,
    chain: tuple[str, ...] = ("probe",),
    *,
    agents: tuple[str, ...] = (),
    namespaces: dict[str, str] | None = None,
    budget: float = 1.0,
    run_id: str = "probe-run",
    seconds: float = 120,
) -> str:
    """A run token as a run of `user_id` holds it (their account is created if missing)."""
    import time

    from shared.agents import accounts
    from shared.platform.auth import Principal, RunGrant, issue_run_token

    owner = Principal(kind="firebase", subject=user_id, user_id=user_id)
    grant = RunGrant(
        user_id=user_id,
        chain=chain,
        agents=agents,
        expires=time.time() + seconds,
        run_id=run_id,
        namespaces=namespaces,  # type: ignore[arg-type]
        budget_micros=accounts.to_micros(budget),
        epoch=accounts.start_run(owner),
    )
    return issue_run_token(grant)
