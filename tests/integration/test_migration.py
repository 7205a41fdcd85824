"""The accounts migration moves data written by the earlier code, and is idempotent."""

from __future__ import annotations

import time

import requests

from devstack.tokens import mint_token
from migrations.m001_split_accounts import migrate
from shared.platform import clients
from tests.integration.helpers import web_sign_up


def legacy_account(spend: float) -> dict:
    return {
        "basicInfo": {"email": None, "displayName": None, "createdAt": 1},
        "billingInfo": {"plan": "free"},
        "usageInfo": {
            "monthlyAllowance": 1.0,
            "allowanceResetDate": time.time() + 3600,
            "spendRemaining": spend,
        },
    }


def test_legacy_accounts_move_with_their_ledger(stack, unique):
    db = clients.firestore()
    with_profile = web_sign_up(stack, f"p-{unique}@example.com")
    db.collection("users").document(with_profile.user_id).update(legacy_account(0.7))
    db.collection("users").document(with_profile.user_id).collection("usage").document("e1").set(
        {"cost": 0.3, "source": "client"}
    )
    account_only = mint_token(f"a-{unique}@example.com")
    db.collection("users").document(account_only.uid).set(legacy_account(0.25))

    moved = migrate()
    again = migrate()

    assert (moved, again) == (2, 0)
    me = requests.get(stack.url("/users/me"), headers=with_profile.headers, timeout=10).json()
    assert me["usageInfo"]["spendRemaining"] == 0.7
    ledger = db.collection("accounts").document(with_profile.user_id).collection("usage")
    assert [e.to_dict()["costMicros"] for e in ledger.stream()] == [300_000]
    profile = db.collection("users").document(with_profile.user_id).get().to_dict()
    assert "usageInfo" not in profile and profile["name"]["first"] == "Web"
    assert not db.collection("users").document(account_only.uid).get().exists
    headers = {"Authorization": f"Bearer {account_only.id_token}"}
    assert (
        requests.post(stack.url("/users"), json={}, headers=headers, timeout=10).status_code == 201
    )
    me = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()
    assert me["usageInfo"]["spendRemaining"] == 0.25


def test_sessions_stored_under_bare_ids_move_under_their_owner(stack, unique):
    from migrations.m002_owner_scoped_sessions import migrate as migrate_sessions

    db = clients.firestore()
    alice = web_sign_up(stack, f"s-{unique}@example.com")
    config = {"provider": "openai", "model": "gpt-4.1-mini", "parameters": {}}
    legacy = {"sessionId": "old", "ownerId": alice.user_id, "provider_config": config}
    db.collection("sessions").document("old").set(legacy)
    db.collection("sessions").document("orphan").set({"provider_config": config})

    moved = migrate_sessions()
    again = migrate_sessions()

    assert (moved, again) == (2, 0)
    read = requests.get(stack.url("/sessions/old/config"), headers=alice.headers, timeout=10)
    assert read.status_code == 200 and read.json() == config
    assert sorted(doc.id for doc in db.collection("sessions").stream()) == [f"{alice.user_id}:old"]
