"""firestore.rules against the Firestore emulator, as a signed-in web client would hit it."""

from __future__ import annotations

import time

import pytest
import requests

from deploy.manifest import ROOT
from shared.platform import clients
from tests.fakes.tokens import unsigned_jwt


def client_token(uid: str) -> str:
    """An unsigned ID token of the shape the emulator accepts from client SDKs."""
    now = int(time.time())
    return unsigned_jwt({"sub": uid, "user_id": uid, "iat": now, "exp": now + 3600, "firebase": {}})


@pytest.fixture
def rules_base(stack) -> str:
    host = stack.env["FIRESTORE_EMULATOR_HOST"]
    project = stack.env["GOOGLE_CLOUD_PROJECT"]
    rules = (ROOT / "firestore.rules").read_text()
    requests.put(
        f"http://{host}/emulator/v1/projects/{project}:securityRules",
        json={"rules": {"files": [{"name": "firestore.rules", "content": rules}]}},
        timeout=10,
    ).raise_for_status()
    return f"http://{host}/v1/projects/{project}/databases/(default)/documents"


@pytest.mark.parametrize(
    "collection",
    ["auth_tokens", "matches", "phone_codes", "user_emails", "notifications", "data_store"],
)
def test_clients_cannot_read_documents_even_their_own(rules_base, unique, collection):
    clients.firestore().collection(collection).document(unique).set({"ownerId": unique})

    response = requests.get(
        f"{rules_base}/{collection}/{unique}",
        headers={"Authorization": f"Bearer {client_token(unique)}"},
        timeout=10,
    )

    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_clients_cannot_write(rules_base, unique):
    response = requests.patch(
        f"{rules_base}/users/{unique}",
        json={"fields": {"elo": {"integerValue": "9999"}}},
        headers={"Authorization": f"Bearer {client_token(unique)}"},
        timeout=10,
    )

    assert response.status_code == 403
    assert not clients.firestore().collection("users").document(unique).get().exists


def test_admin_sdk_is_not_bound_by_rules(rules_base, unique):
    clients.firestore().collection("users").document(unique).set({"name": "x"})

    response = requests.get(
        f"{rules_base}/users/{unique}", headers={"Authorization": "Bearer owner"}, timeout=10
    )

    assert response.status_code == 200


def test_owner_may_read_own_ticket_but_not_write_it(rules_base, unique):
    clients.firestore().collection("tickets").document(unique).set(
        {"ownerId": "alice", "status": "pending"}
    )
    headers = {"Authorization": f"Bearer {client_token('alice')}"}

    read = requests.get(f"{rules_base}/tickets/{unique}", headers=headers, timeout=10)
    write = requests.patch(
        f"{rules_base}/tickets/{unique}",
        json={"fields": {"status": {"stringValue": "completed"}}},
        headers=headers,
        timeout=10,
    )

    assert read.status_code == 200
    assert read.json()["fields"]["status"]["stringValue"] == "pending"
    assert write.status_code == 403


def test_others_cannot_read_a_ticket(rules_base, unique):
    clients.firestore().collection("tickets").document(unique).set({"ownerId": "alice"})

    response = requests.get(
        f"{rules_base}/tickets/{unique}",
        headers={"Authorization": f"Bearer {client_token('mallory')}"},
        timeout=10,
    )
    anonymous = requests.get(f"{rules_base}/tickets/{unique}", timeout=10)

    assert response.status_code == 403
    assert anonymous.status_code == 403


def test_owner_query_is_allowed_only_when_filtered_to_own_tickets(rules_base, unique):
    clients.firestore().collection("tickets").document(unique).set({"ownerId": "alice"})
    headers = {"Authorization": f"Bearer {client_token('alice')}"}
    own = {
        "structuredQuery": {
            "from": [{"collectionId": "tickets"}],
            "where": {
                "fieldFilter": {
                    "field": {"fieldPath": "ownerId"},
                    "op": "EQUAL",
                    "value": {"stringValue": "alice"},
                }
            },
        }
    }
    everything = {"structuredQuery": {"from": [{"collectionId": "tickets"}]}}

    allowed = requests.post(f"{rules_base}:runQuery", json=own, headers=headers, timeout=10)
    refused = requests.post(f"{rules_base}:runQuery", json=everything, headers=headers, timeout=10)

    assert allowed.status_code == 200
    assert refused.status_code == 403


def read(rules_base: str, path: str, uid: str | None) -> int:
    headers = {"Authorization": f"Bearer {client_token(uid)}"} if uid else {}
    return requests.get(f"{rules_base}/{path}", headers=headers, timeout=10).status_code


@pytest.mark.parametrize("collection", ["users", "accounts"])
def test_a_user_reads_only_their_own_profile_and_account(rules_base, unique, collection):
    clients.firestore().collection(collection).document(unique).set({"x": 1})

    assert read(rules_base, f"{collection}/{unique}", unique) == 200
    assert read(rules_base, f"{collection}/{unique}", "mallory") == 403
    assert read(rules_base, f"{collection}/{unique}", None) == 403


@pytest.mark.parametrize("collection", ["tickets", "sessions", "agents", "demos"])
def test_owned_documents_are_readable_by_their_owner_only(rules_base, unique, collection):
    clients.firestore().collection(collection).document(unique).set({"ownerId": "alice"})

    assert read(rules_base, f"{collection}/{unique}", "alice") == 200
    assert read(rules_base, f"{collection}/{unique}", "mallory") == 403
    assert read(rules_base, f"{collection}/{unique}", None) == 403


@pytest.mark.parametrize("collection", ["users", "accounts", "tickets", "agents", "demos"])
def test_owners_write_nothing(rules_base, unique, collection):
    clients.firestore().collection(collection).document(unique).set({"ownerId": unique})

    response = requests.patch(
        f"{rules_base}/{collection}/{unique}",
        json={"fields": {"ownerId": {"stringValue": unique}, "x": {"integerValue": "1"}}},
        headers={"Authorization": f"Bearer {client_token(unique)}"},
        timeout=10,
    )

    assert response.status_code == 403
    assert "x" not in clients.firestore().collection(collection).document(unique).get().to_dict()
