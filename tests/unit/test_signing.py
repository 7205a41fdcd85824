"""Signed tokens (`shared.platform.signing`): purpose-bound, tamper-evident, expiring."""

from __future__ import annotations

import base64
import json
import time

import pytest

from shared.platform import signing
from shared.platform.errors import Unauthorized


def encoded(claims: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


def test_a_token_reads_back_for_its_purpose_only():
    token = signing.sign("demo-capability.v1", {"u": "alice", "e": time.time() + 60})

    assert signing.read("demo-capability.v1", token)["u"] == "alice"
    with pytest.raises(Unauthorized):
        signing.read("run-token.v1", token)


@pytest.mark.parametrize(
    "change",
    [
        lambda payload, signature: (
            f"{encoded({'u': 'mallory', 'e': time.time() + 60})}~{signature}"
        ),
        lambda payload, signature: f"{payload}~{signature[:-1]}",
        lambda payload, signature: f"{payload}~",
        lambda payload, signature: payload,
        lambda payload, signature: f"~{signature}",
        lambda payload, signature: f"{payload}~{signature}é",
    ],
)
def test_a_changed_token_is_refused(change):
    payload, signature = signing.sign("p.v1", {"u": "alice", "e": time.time() + 60}).split("~")

    with pytest.raises(Unauthorized, match="Invalid token"):
        signing.read("p.v1", change(payload, signature))


def test_an_expired_token_is_refused():
    token = signing.sign("p.v1", {"e": time.time() - 1})

    with pytest.raises(Unauthorized, match="Token expired"):
        signing.read("p.v1", token)


@pytest.mark.parametrize("claims", [[1, 2], {"e": True}, {"e": "later"}, {"u": "no expiry"}])
def test_signed_but_malformed_claims_are_refused(claims):
    payload = encoded(claims)
    token = f"{payload}~{signing._signature('p.v1', payload)}"

    with pytest.raises(Unauthorized, match="Invalid token"):
        signing.read("p.v1", token)


def test_a_token_needs_an_expiry():
    with pytest.raises(ValueError, match="expiry"):
        signing.sign("p.v1", {"u": "alice"})
