"""Accounts, allowance rules, admin user management and sessions, through the gateway."""

from __future__ import annotations

import time

import pytest
import requests

from devstack.tokens import mint_token
from shared.platform import clients


@pytest.fixture
def user(stack, unique):
    token = mint_token(f"user-{unique}@example.com")
    return {"Authorization": f"Bearer {token.id_token}"}, token.uid


@pytest.fixture
def admin(stack, unique):
    token = mint_token(f"admin-{unique}@example.com", admin=True)
    return {"Authorization": f"Bearer {token.id_token}"}


def me(stack, headers):
    response = requests.get(stack.url("/users/me"), headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def put(stack, path, body, headers):
    return requests.put(stack.url(path), json=body, headers=headers, timeout=10)


def test_account_is_created_on_first_call(stack, user, unique):
    headers, uid = user

    account = me(stack, headers)

    assert account["userId"] == uid
    assert account["basicInfo"]["email"] == f"user-{unique}@example.com"
    assert account["billingInfo"] == {"plan": "free", "planCap": 1.0}
    assert account["usageInfo"]["monthlyAllowance"] == 1.0
    assert account["usageInfo"]["spendRemaining"] == 1.0
    assert account["usageInfo"]["allowanceResetDate"] > time.time()


def test_user_may_lower_but_not_exceed_cap(stack, user):
    headers, _ = user
    me(stack, headers)

    lowered = put(stack, "/users/me/monthly-allowance", {"monthlyAllowance": 0.5}, headers)
    above_cap = put(stack, "/users/me/monthly-allowance", {"monthlyAllowance": 2.0}, headers)

    assert lowered.status_code == 200
    assert lowered.json()["usageInfo"]["monthlyAllowance"] == 0.5
    assert lowered.json()["usageInfo"]["spendRemaining"] == 0.5
    assert above_cap.status_code == 403
    assert me(stack, headers)["usageInfo"]["monthlyAllowance"] == 0.5


def test_spend_remaining_only_goes_down_for_users(stack, user):
    headers, _ = user
    me(stack, headers)

    down = put(stack, "/users/me/spend-remaining", {"spendRemaining": 0.25}, headers)
    up = put(stack, "/users/me/spend-remaining", {"spendRemaining": 0.9}, headers)
    negative = put(stack, "/users/me/spend-remaining", {"spendRemaining": -1}, headers)

    assert down.status_code == 200
    assert up.status_code == 403
    assert negative.status_code == 422
    assert me(stack, headers)["usageInfo"]["spendRemaining"] == 0.25


def test_reset_date_can_only_be_postponed_and_early_reset_is_admin_only(stack, user):
    headers, _ = user
    current = me(stack, headers)["usageInfo"]["allowanceResetDate"]

    later = put(
        stack, "/users/me/allowance-reset-date", {"allowanceResetDate": current + 60}, headers
    )
    earlier = put(stack, "/users/me/allowance-reset-date", {"allowanceResetDate": 1000}, headers)
    early_reset = requests.post(stack.url("/users/me/reset-allowance"), headers=headers, timeout=10)

    assert later.status_code == 200
    assert earlier.status_code == 403
    assert early_reset.status_code == 403


def test_allowance_resets_itself_when_due(stack, user):
    headers, uid = user
    me(stack, headers)
    put(stack, "/users/me/spend-remaining", {"spendRemaining": 0.1}, headers)
    clients.firestore().collection("accounts").document(uid).update(
        {"usageInfo.allowanceResetDate": time.time() - 1}
    )

    account = me(stack, headers)

    assert account["usageInfo"]["spendRemaining"] == 1.0
    assert account["usageInfo"]["allowanceResetDate"] > time.time()


def test_usage_entry_is_recorded_in_the_ledger(stack, user):
    headers, uid = user
    me(stack, headers)

    response = requests.post(
        stack.url("/users/me/usage"),
        json={"responseCost": 0.3, "metadata": {"feature": "demo"}},
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json()["usageInfo"]["spendRemaining"] == pytest.approx(0.7)
    entries = list(
        clients.firestore().collection("accounts").document(uid).collection("usage").stream()
    )
    assert [e.to_dict()["costMicros"] for e in entries] == [300_000]


def test_admin_manages_users(stack, user, admin):
    headers, uid = user
    me(stack, headers)

    raised = put(
        stack, f"/admin/users/{uid}", {"monthlyAllowance": 20, "spendRemaining": 20}, admin
    )
    page = requests.get(stack.url("/admin/users"), params={"limit": 1}, headers=admin, timeout=10)
    empty = put(stack, f"/admin/users/{uid}", {}, admin)
    missing = put(stack, "/admin/users/nobody", {"spendRemaining": 1}, admin)
    not_admin = requests.get(stack.url("/admin/users"), headers=headers, timeout=10)

    assert raised.status_code == 200
    assert raised.json()["usageInfo"]["monthlyAllowance"] == 20
    assert page.status_code == 200
    assert len(page.json()) <= 1
    assert empty.status_code == 422
    assert missing.status_code == 404
    assert not_admin.status_code == 403


def test_admin_list_pages_through_every_account(stack, admin, unique):
    uids = set()
    for index in range(3):
        token = mint_token(f"p{index}-{unique}@example.com")
        me(stack, {"Authorization": f"Bearer {token.id_token}"})
        uids.add(token.uid)

    seen, cursor = set(), None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = requests.get(stack.url("/admin/users"), params=params, headers=admin, timeout=10)
        seen |= {account["_id"] for account in page.json()}
        if len(page.json()) < 2:
            break
        cursor = page.json()[-1]["_id"]

    assert uids <= seen


def test_sessions_are_owner_scoped(stack, user, unique):
    headers, _ = user
    other = {"Authorization": f"Bearer {mint_token(f'other-{unique}@example.com').id_token}"}
    config = {"provider": "openai", "model": "gpt-4.1-mini", "parameters": {"temperature": 0.2}}

    saved = requests.post(
        stack.url(f"/sessions/{unique}/config"), json=config, headers=headers, timeout=10
    )
    fetched = requests.get(stack.url(f"/sessions/{unique}/config"), headers=headers, timeout=10)
    foreign_read = requests.get(stack.url(f"/sessions/{unique}/config"), headers=other, timeout=10)
    foreign_write = requests.post(
        stack.url(f"/sessions/{unique}/config"), json=config, headers=other, timeout=10
    )
    foreign_delete = requests.delete(stack.url(f"/sessions/{unique}"), headers=other, timeout=10)
    deleted = requests.delete(stack.url(f"/sessions/{unique}"), headers=headers, timeout=10)
    gone = requests.get(stack.url(f"/sessions/{unique}/config"), headers=headers, timeout=10)

    assert saved.status_code == 200
    assert fetched.json() == config
    assert foreign_read.status_code == 404
    assert foreign_write.status_code == 200  # the other user's own session of that id
    assert foreign_delete.status_code == 200  # ... which they may delete
    assert deleted.json() == {"message": "Session deleted"}
    assert gone.status_code == 404


def test_session_config_is_validated(stack, user, unique):
    headers, _ = user

    response = requests.post(
        stack.url(f"/sessions/{unique}/config"),
        json={"provider": "openai", "model": "gpt-4.1-mini", "parameters": {"top_p": 3}},
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 422
    assert not list(clients.firestore().collection("sessions").stream())


def test_chat_with_nothing_left_is_402_and_writes_no_ticket(stack, user):
    headers, _ = user
    me(stack, headers)
    put(stack, "/users/me/spend-remaining", {"spendRemaining": 0}, headers)

    response = requests.post(
        stack.url("/chat"),
        json={
            "provider": "gemini",
            "model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 402
    assert list(clients.firestore().collection("tickets").stream()) == []
    assert stack.llm.calls("gemini") == []
