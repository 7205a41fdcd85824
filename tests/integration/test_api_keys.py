"""Users' own LLM API keys: sealed at rest, masked in answers, used before the platform's."""

from __future__ import annotations

import logging
import time

import pytest
import requests

from devstack.tokens import mint_token
from shared.agents import accounts
from shared.platform import clients
from tests.fakes.kms import FakeKms
from tests.fakes.server import serving

OWN_KEY = "sk-own-key-of-the-user-0123456789abcdef"


@pytest.fixture
def user(stack, unique):
    token = mint_token(f"keys-{unique}@example.com")
    return {"Authorization": f"Bearer {token.id_token}"}, token.uid


@pytest.fixture
def other(stack, unique):
    token = mint_token(f"other-{unique}@example.com")
    return {"Authorization": f"Bearer {token.id_token}"}, token.uid


def put_key(stack, headers, provider, key=OWN_KEY):
    return requests.put(
        stack.url("/users/me/api-keys"),
        json={"provider": provider, "api_key": key},
        headers=headers,
        timeout=10,
    )


def chat(stack, headers, provider, model):
    body = {
        "messages": [{"role": "user", "content": "Hi"}],
        "provider": provider,
        "model": model,
        "parameters": {},
    }
    created = requests.post(stack.url("/chat"), json=body, headers=headers, timeout=10)
    assert created.status_code == 200, created.text
    ticket = created.json()["ticket_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        data = requests.get(stack.url(f"/chat/{ticket}"), headers=headers, timeout=10).json()
        if data["status"] in ("completed", "failed"):
            return data
        time.sleep(0.1)
    raise AssertionError("ticket did not finish")


def ledger(uid):
    usage = clients.firestore().collection("accounts").document(uid).collection("usage")
    return [snapshot.to_dict() for snapshot in usage.stream()]


def test_key_is_stored_sealed_and_answered_masked(stack, user, caplog):
    headers, uid = user
    caplog.set_level(logging.DEBUG)

    saved = put_key(stack, headers, "openai")
    listed = requests.get(stack.url("/users/me/api-keys"), headers=headers, timeout=10)
    profile = requests.get(stack.url("/users/me"), headers=headers, timeout=10)
    exported = requests.get(stack.url("/users/me/export"), headers=headers, timeout=10)

    assert saved.status_code == 200, saved.text
    assert listed.json()["openaiApiKey"].endswith("cdef")
    assert listed.json()["anthropicApiKey"] is None
    for answer in (saved, listed, profile, exported):
        assert answer.status_code == 200
        assert OWN_KEY[:-4] not in answer.text
    stored = clients.firestore().collection("accounts").document(uid).get().to_dict()
    sealed = stored["ownApiKeys"]["openai"]
    assert sealed["kek"] == "local"
    assert OWN_KEY.encode() not in b"".join(
        value for value in sealed.values() if isinstance(value, bytes)
    )
    assert OWN_KEY not in str(stored)
    assert "ciphertext" not in exported.text
    assert all(OWN_KEY[:-4] not in record.getMessage() for record in caplog.records)


def test_calls_use_the_own_key_and_do_not_charge_the_allowance(stack, user):
    headers, uid = user
    stack.llm.accepted_keys.add(OWN_KEY)
    put_key(stack, headers, "anthropic")
    before = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()

    own = chat(stack, headers, "anthropic", "claude-haiku-4-5")
    platform = chat(stack, headers, "openai", "gpt-4.1-mini")

    assert own["status"] == "completed"
    assert platform["status"] == "completed"
    assert stack.llm.keys == [("anthropic", OWN_KEY), ("openai", "test-llm-key")]
    entries = {entry["provider"]: entry for entry in ledger(uid)}
    assert entries["anthropic"]["keySource"] == "user"
    assert entries["anthropic"]["costMicros"] == 0
    assert entries["openai"]["keySource"] == "platform"
    after = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()
    spent = before["usageInfo"]["spendRemaining"] - after["usageInfo"]["spendRemaining"]
    assert spent == pytest.approx(accounts.to_dollars(entries["openai"]["costMicros"]))


def test_own_key_pays_when_the_allowance_is_spent(stack, user):
    headers, _ = user
    stack.llm.accepted_keys.add(OWN_KEY)
    put_key(stack, headers, "anthropic")
    requests.put(
        stack.url("/users/me/spend-remaining"),
        json={"spendRemaining": 0},
        headers=headers,
        timeout=10,
    )

    own = chat(stack, headers, "anthropic", "claude-haiku-4-5")
    refused = requests.post(
        stack.url("/chat"),
        json={
            "messages": [{"role": "user", "content": "Hi"}],
            "provider": "openai",
            "model": "gpt-4.1-mini",
            "parameters": {},
        },
        headers=headers,
        timeout=10,
    )

    assert own["status"] == "completed"
    assert refused.status_code == 402


def test_provider_without_a_platform_key_is_usable_with_an_own_key(stack, user, other, monkeypatch):
    headers, _ = user
    other_headers, _ = other
    stack.llm.accepted_keys.add(OWN_KEY)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    clients.reset()
    try:
        put_key(stack, headers, "anthropic")

        mine = requests.get(stack.url("/providers"), headers=headers, timeout=10).json()
        theirs = requests.get(stack.url("/providers"), headers=other_headers, timeout=10).json()
        effective = requests.get(
            stack.url("/users/me/api-keys/anthropic/effective"), headers=other_headers, timeout=10
        ).json()
        answer = chat(stack, headers, "anthropic", "claude-haiku-4-5")
        refused = requests.post(
            stack.url("/chat"),
            json={
                "messages": [{"role": "user", "content": "Hi"}],
                "provider": "anthropic",
                "model": "claude-haiku-4-5",
                "parameters": {},
            },
            headers=other_headers,
            timeout=10,
        )
    finally:
        monkeypatch.undo()
        clients.reset()

    assert "anthropic" in mine
    assert "anthropic" not in theirs
    assert effective == {"provider": "anthropic", "has_key": False, "source": None}
    assert answer["status"] == "completed"
    assert refused.status_code == 422


def test_keys_are_the_owners_alone(stack, user, other, unique):
    headers, uid = user
    other_headers, _ = other
    admin = mint_token(f"admin-{unique}@example.com", admin=True)
    put_key(stack, headers, "openai")

    theirs = requests.get(stack.url("/users/me/api-keys"), headers=other_headers, timeout=10)
    listing = requests.get(
        stack.url("/admin/users"),
        headers={"Authorization": f"Bearer {admin.id_token}"},
        timeout=10,
    )
    anonymous = requests.get(stack.url("/users/me/api-keys"), timeout=10)

    assert theirs.json()["openaiApiKey"] is None
    mine = next(account for account in listing.json() if account["_id"] == uid)
    assert mine["apiKeys"]["openaiApiKey"] is None
    assert anonymous.status_code == 401


def test_bad_keys_and_providers_are_refused_without_a_write(stack, user):
    headers, uid = user

    unknown = put_key(stack, headers, "acme")
    unused = put_key(stack, headers, "perplexity")
    spaced = put_key(stack, headers, "openai", "sk-with a space")
    empty = put_key(stack, headers, "openai", "")
    extra = requests.put(
        stack.url("/users/me/api-keys"),
        json={"provider": "openai", "api_key": OWN_KEY, "owner": "someone"},
        headers=headers,
        timeout=10,
    )
    delete_unknown = requests.delete(
        stack.url("/users/me/api-keys/acme"), headers=headers, timeout=10
    )

    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "Unknown provider: acme"
    assert unused.status_code == 400
    assert "perplexity" in unused.json()["detail"]
    assert [spaced.status_code, empty.status_code, extra.status_code] == [422, 422, 422]
    assert "a space" not in spaced.text
    assert delete_unknown.status_code == 400
    assert accounts.sealed_api_keys(uid) == {}


def test_deleting_the_account_deletes_the_keys(stack, user):
    headers, uid = user
    put_key(stack, headers, "openai")

    accounts.delete_user_data(uid)

    assert accounts.sealed_api_keys(uid) == {}


KMS_KEY = "projects/demo-series-test/locations/global/keyRings/series/cryptoKeys/user-api-keys"


def test_cloud_kms_wraps_the_data_keys_when_configured(stack, user, monkeypatch):
    headers, uid = user
    kms = FakeKms()
    stack.llm.accepted_keys.add(OWN_KEY)
    with serving(kms.app()) as kms_url:
        monkeypatch.setenv("API_KEYS_KMS_KEY", KMS_KEY)
        monkeypatch.setenv("API_KEYS_KMS_ENDPOINT", kms_url)
        clients.reset()
        try:
            saved = put_key(stack, headers, "anthropic")
            answer = chat(stack, headers, "anthropic", "claude-haiku-4-5")
        finally:
            monkeypatch.undo()
            clients.reset()

    assert saved.status_code == 200, saved.text
    assert answer["status"] == "completed"
    assert stack.llm.keys == [("anthropic", OWN_KEY)]
    assert kms.calls == [("encrypt", KMS_KEY), ("decrypt", KMS_KEY)]
    sealed = accounts.sealed_api_keys(uid)["anthropic"]
    assert sealed["kek"] == KMS_KEY
