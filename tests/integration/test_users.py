"""Users and matches through the gateway: ownership, privacy, uniqueness, Elo."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devstack.tokens import mint_token
from shared.platform import clients
from tests.integration.helpers import (
    introduced,
    phone_token,
    random_number,
    sign_up,
    web_sign_up,
)

PRIVATE_FIELDS = ("phone", "email", "metadata", "elo", "sender", "roles", "firebaseUid")


def admin_headers(unique: str) -> dict[str, str]:
    token = mint_token(f"admin-{unique}@example.com", admin=True).id_token
    return {"Authorization": f"Bearer {token}"}


def test_another_users_profile_is_refused(stack):
    alice = sign_up(stack, name={"first": "Alice"})
    bob = sign_up(stack, name={"first": "Bob"})

    read = requests.get(stack.url(f"/users/{bob.user_id}"), headers=alice.headers, timeout=10)
    update = requests.put(
        stack.url(f"/users/{bob.user_id}"),
        json={"bio": "hacked"},
        headers=alice.headers,
        timeout=10,
    )
    by_phone = requests.get(
        stack.url(f"/users/phone/{bob.phone}"), headers=alice.headers, timeout=10
    )

    assert (read.status_code, update.status_code, by_phone.status_code) == (403, 403, 403)
    assert clients.firestore().collection("users").document(bob.user_id).get().get("bio") is None


def test_own_phone_lookup_and_admin_lookup(stack, unique):
    alice = sign_up(stack)

    own = requests.get(stack.url(f"/users/phone/{alice.phone}"), headers=alice.headers, timeout=10)
    admin = requests.get(
        stack.url(f"/users/phone/{alice.phone}"), headers=admin_headers(unique), timeout=10
    )
    missing = requests.get(
        stack.url(f"/users/phone/{random_number()}"), headers=admin_headers(unique), timeout=10
    )

    assert own.json()["userId"] == alice.user_id
    assert admin.json()["userId"] == alice.user_id
    assert missing.status_code == 404


def test_protected_routes_need_a_token(stack):
    alice = sign_up(stack)

    for method, path in [
        ("GET", f"/users/{alice.user_id}"),
        ("PUT", f"/users/{alice.user_id}"),
        ("GET", f"/users/phone/{alice.phone}"),
        ("GET", f"/users/check-phone?phone={alice.phone}"),
        ("GET", "/users/check-email?email=a@example.com"),
        ("POST", "/users"),
        ("POST", f"/users/close-loop?sourceId={alice.user_id}&targetId=x"),
    ]:
        response = requests.request(method, stack.url(path), json={}, timeout=10)
        assert response.status_code == 401, (method, path)


def test_public_profile_leaks_nothing_private(stack, unique):
    alice = web_sign_up(
        stack,
        f"alice-{unique}@example.com",
        name={"first": "Alice"},
        bio="Hi",
        metadata={"network": [{"name": "Bob", "email": "bob@example.com", "timeSpent": 3}]},
    )

    response = requests.get(stack.url(f"/users/{alice.user_id}/public"), timeout=10)

    assert response.status_code == 200
    body = response.json()
    assert body["name"]["first"] == "Alice"
    assert body["bio"] == "Hi"
    for field in PRIVATE_FIELDS:
        assert field not in body
    assert "example.com" not in response.text


def test_public_profile_of_unknown_user_is_404(stack):
    assert requests.get(stack.url("/users/nobody/public"), timeout=10).status_code == 404


def test_duplicate_email_is_409(stack, unique):
    first = sign_up(stack)
    taken = f"same-{unique}@example.com"
    requests.put(
        stack.url(f"/users/{first.user_id}"),
        json={"email": taken.upper()},
        headers=admin_headers(unique),
        timeout=10,
    ).raise_for_status()
    user = mint_token(taken)

    response = requests.post(
        stack.url("/users"),
        json={"email": taken},
        headers={"Authorization": f"Bearer {user.id_token}"},
        timeout=10,
    )

    assert response.status_code == 409
    assert response.json() == {"detail": "Email already in use"}


def test_creating_twice_is_409(stack):
    alice = sign_up(stack)

    again = requests.post(stack.url("/users"), json={}, headers=alice.headers, timeout=10)

    assert again.status_code == 409


def test_phone_token_cannot_claim_another_phone(stack):
    token = phone_token(stack, random_number())["token"]

    response = requests.post(
        stack.url("/users"),
        json={"phone": random_number()},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )

    assert response.status_code == 403


def test_unknown_fields_are_422(stack):
    token = phone_token(stack, random_number())["token"]

    response = requests.post(
        stack.url("/users"),
        json={"nickname": "x"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "nickname"]
    assert not list(clients.firestore().collection("users").stream())


def test_firebase_user_creates_profile_under_their_uid(stack, unique):
    user = mint_token(f"{unique}@example.com")

    response = requests.post(
        stack.url("/users"),
        json={"name": {"first": "Web"}},
        headers={"Authorization": f"Bearer {user.id_token}"},
        timeout=10,
    )

    assert response.status_code == 201
    assert response.json()["userId"] == user.uid
    assert response.json()["email"] == f"{unique}@example.com"


def test_user_updates_own_profile_but_not_system_fields(stack):
    alice = sign_up(stack)
    path = stack.url(f"/users/{alice.user_id}")

    ok = requests.put(
        path,
        json={
            "bio": "New bio",
            "metadata": {"network": [{"name": "Bo", "email": "bo@example.com", "timeSpent": 2}]},
        },
        headers=alice.headers,
        timeout=10,
    )
    referred = requests.put(
        path, json={"metadata": {"referredBy": "friend"}}, headers=alice.headers, timeout=10
    )
    same_elo = requests.put(path, json={"elo": 1600}, headers=alice.headers, timeout=10)
    raise_elo = requests.put(path, json={"elo": 3000}, headers=alice.headers, timeout=10)
    archetype = requests.put(
        path, json={"metadata": {"archetype": True}}, headers=alice.headers, timeout=10
    )
    notes = requests.put(
        path,
        json={
            "metadata": {"notes": {"aiScore": 99, "userScore": 10, "text": "", "flagged": False}}
        },
        headers=alice.headers,
        timeout=10,
    )

    assert ok.status_code == 200
    assert ok.json()["bio"] == "New bio"
    assert ok.json()["metadata"]["network"][0]["name"] == "Bo"
    assert same_elo.status_code == 200
    statuses = (raise_elo, archetype, notes, referred)
    assert [r.status_code for r in statuses] == [403, 403, 403, 403]
    stored = clients.firestore().collection("users").document(alice.user_id).get().to_dict()
    assert stored["elo"] == 1600
    assert stored["metadata"]["archetype"] is False


def test_admin_may_change_system_fields(stack, unique):
    alice = sign_up(stack)

    response = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"elo": 1700, "phone": None, "metadata": {"archetype": True}},
        headers=admin_headers(unique),
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json()["elo"] == 1700
    assert response.json()["metadata"]["archetype"] is True


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"age": 5}, ["body", "age"]),
        ({"email": "not-an-email"}, ["body", "email"]),
        ({"userId": "someone-else"}, ["body", "userId"]),
        ({"unknown": 1}, ["body", "unknown"]),
    ],
)
def test_bad_updates_are_422(stack, body, loc):
    alice = sign_up(stack)

    response = requests.put(
        stack.url(f"/users/{alice.user_id}"), json=body, headers=alice.headers, timeout=10
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc


def test_email_change_moves_the_uniqueness_claim(stack, unique):
    alice = web_sign_up(stack, f"old-{unique}@example.com")
    bob = web_sign_up(stack, f"bob-{unique}@example.com")
    admin = admin_headers(unique)

    taken = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"email": f"bob-{unique}@example.com"},
        headers=admin,
        timeout=10,
    )
    moved = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"email": "new@example.com"},
        headers=admin,
        timeout=10,
    )
    old = requests.get(
        stack.url("/users/check-email"),
        params={"email": f"old-{unique}@example.com"},
        headers=bob.headers,
        timeout=10,
    )

    assert taken.status_code == 409
    assert moved.status_code == 200
    assert old.json() == {"exists": False, "userId": None, "hasCompleteProfile": False}


def test_check_phone_and_email(stack, unique):
    alice = sign_up(stack, bio="b", age=30, location="Paris")
    requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"email": "alice@example.com"},
        headers=admin_headers(unique),
        timeout=10,
    ).raise_for_status()
    bob = sign_up(stack)

    phone = requests.get(
        stack.url("/users/check-phone"),
        params={"phone": alice.phone},
        headers=alice.headers,
        timeout=10,
    )
    email = requests.get(
        stack.url("/users/check-email"),
        params={"email": "ALICE@example.com"},
        headers=alice.headers,
        timeout=10,
    )
    other = requests.get(
        stack.url("/users/check-email"),
        params={"email": "alice@example.com"},
        headers=bob.headers,
        timeout=10,
    )
    unknown = requests.get(
        stack.url("/users/check-phone"),
        params={"phone": random_number()},
        headers=alice.headers,
        timeout=10,
    )
    invalid = requests.get(
        stack.url("/users/check-phone"), params={"phone": "123"}, headers=alice.headers, timeout=10
    )

    assert phone.json() == {"exists": True}
    assert email.json() == {"exists": True, "userId": alice.user_id, "hasCompleteProfile": False}
    assert other.json() == {"exists": True, "userId": None, "hasCompleteProfile": False}
    assert unknown.json() == {"exists": False}
    assert invalid.status_code == 422


def close_loop(stack, who, source, target, outcome="accepted", **params):
    return requests.post(
        stack.url("/users/close-loop"),
        params={"sourceId": source, "targetId": target, **params},
        json={"outcome": outcome},
        headers=who.headers,
        timeout=30,
    )


def elo(user_id: str) -> int:
    return clients.firestore().collection("users").document(user_id).get().get("elo")


def test_concurrent_close_loop_applies_elo_once(stack):
    alice, bob = introduced(stack)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(
            pool.map(lambda _: close_loop(stack, alice, alice.user_id, bob.user_id), range(4))
        )

    assert {a.status_code for a in answers} == {200}
    assert {a.json()["eloChange"][alice.user_id] for a in answers} == {16}
    assert (elo(alice.user_id), elo(bob.user_id)) == (1616, 1584)


def test_close_loop_notifies_only_the_recorded_referrer(stack):
    alice, bob = introduced(stack)

    forged = close_loop(
        stack, bob, alice.user_id, bob.user_id, outcome="declined", ref_phone=random_number()
    )
    response = close_loop(
        stack, bob, alice.user_id, bob.user_id, outcome="declined", ref_phone=alice.phone
    )

    assert forged.status_code == 422
    assert response.status_code == 200
    assert response.json()["notification"] == "pending"
    assert response.json()["eloChange"] == {alice.user_id: -16, bob.user_id: 16}
    match_id = response.json()["matchId"]
    match = clients.firestore().collection("matches").document(match_id).get().to_dict()
    assert match["source"] == "referral"
    assert match["referrer"] == {"userId": alice.user_id}
    notices = list(clients.firestore().collection("notifications").stream())
    assert [(n.id, n.to_dict()["to"]) for n in notices] == [(f"{match_id}-referrer", alice.phone)]


def test_close_loop_without_an_introduction_is_404_and_writes_nothing(stack):
    alice, stranger = sign_up(stack), sign_up(stack)

    response = close_loop(stack, alice, alice.user_id, stranger.user_id, ref_phone=random_number())

    assert response.status_code == 404
    assert (elo(alice.user_id), elo(stranger.user_id)) == (1600, 1600)
    assert not list(clients.firestore().collection("matches").stream())
    assert not list(clients.firestore().collection("notifications").stream())


def test_close_loop_other_outcome_after_close_is_409_and_changes_nothing(stack):
    alice, bob = introduced(stack)
    close_loop(stack, alice, alice.user_id, bob.user_id, outcome="accepted")

    response = close_loop(stack, alice, alice.user_id, bob.user_id, outcome="declined")

    assert response.status_code == 409
    assert (elo(alice.user_id), elo(bob.user_id)) == (1616, 1584)


def test_close_loop_neutral_outcome_keeps_elo(stack):
    alice, bob = introduced(stack)

    response = close_loop(stack, alice, alice.user_id, bob.user_id, outcome="no_response")

    assert response.status_code == 200
    assert (elo(alice.user_id), elo(bob.user_id)) == (1600, 1600)


def test_close_loop_by_outsider_is_403_and_bad_input_422(stack):
    (alice, bob), eve = introduced(stack), sign_up(stack)

    outsider = close_loop(stack, eve, alice.user_id, bob.user_id)
    same = close_loop(stack, alice, alice.user_id, alice.user_id)
    outcome = close_loop(stack, alice, alice.user_id, bob.user_id, outcome="maybe")
    bad_ref = close_loop(stack, alice, alice.user_id, bob.user_id, ref_phone="12")
    missing = close_loop(stack, alice, alice.user_id, "ghost")

    assert outsider.status_code == 403
    assert same.status_code == 422
    assert outcome.status_code == 422
    assert bad_ref.status_code == 422
    assert missing.status_code == 404
    match = (
        clients.firestore()
        .collection("matches")
        .document("__".join(sorted((alice.user_id, bob.user_id))))
        .get()
        .to_dict()
    )
    assert match["status"] == "open"


@pytest.mark.parametrize("user_id", ["__reserved__", "a.b", "x" * 200, "%2E%2E"])
def test_ids_firestore_cannot_hold_are_404_not_500(stack, unique, user_id):
    response = requests.get(
        stack.url(f"/users/{user_id}"), headers=admin_headers(unique), timeout=10
    )

    assert response.status_code == 404
