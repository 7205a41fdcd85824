"""Abuse resistance, tried from outside as a throwaway account would.

Three classes, each with its siblings: inputs no parser chokes on (numbers,
nesting, text, headers), ids no one can squat or probe (sessions are per
owner), ratings and other users' state no stranger can move (referrals,
close-loop, notifications), and the rate limits on what a throwaway account
can do cheaply.
"""

from __future__ import annotations

import pytest
import requests

from devstack.tokens import mint_token
from shared.platform import clients
from shared.platform.config import get_settings
from tests.integration.helpers import (
    SignedUp,
    confirm_referral,
    phone_token,
    random_number,
    sign_up,
)
from tests.integration.test_privacy import fixed_number_token, wait_deleted

JSON = {"Content-Type": "application/json"}
HUGE_INT = "1" * 5_000  # above CPython's 4,300-digit conversion guard
LONG_FRACTION = "0." + "1" * 5_000
LONG_EXPONENT = "1e" + "9" * 5_000


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Inputs: any body the JSON layer cannot turn into values is a 422, never a 500,
# on open routes before authentication and on authenticated ones alike.

OPEN_ROUTES = [
    ("/auth/send-code", '{"phone": %s}'),
    ("/auth/verify-code", '{"phone": "+12015550100", "code": %s}'),
    ("/auth/logout", '{"token": %s}'),
    ("/log/client", '{"eventType": "e", "metadata": {"n": %s}}'),
]


@pytest.mark.parametrize("number", [HUGE_INT, "-" + HUGE_INT, LONG_FRACTION, LONG_EXPONENT])
@pytest.mark.parametrize(("path", "template"), OPEN_ROUTES)
def test_numbers_the_parser_refuses_are_422_on_open_routes(stack, path, template, number):
    response = requests.post(
        stack.url(path), data=(template % number).encode(), headers=JSON, timeout=10
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize("number", [HUGE_INT, "9" * 25, LONG_FRACTION])
def test_numbers_the_parser_refuses_are_422_with_their_place(stack, unique, number):
    user = mint_token(f"n-{unique}@example.com")
    requests.get(stack.url("/users/me"), headers=bearer(user.id_token), timeout=10)
    body = '{"responseCost": 0.1, "metadata": {"n": [1, ' + number + "]}}"

    response = requests.post(
        stack.url("/users/me/usage"),
        data=body.encode(),
        headers={**bearer(user.id_token), **JSON},
        timeout=10,
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "metadata", "n", 1]
    ledger = clients.firestore().collection("accounts").document(user.uid).collection("usage")
    assert not list(ledger.stream())


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000,  # unclosed and deeper than any parser recursion
        '{"a":' * 50 + "1" + "}" * 50,  # well formed, deeper than MAX_JSON_DEPTH
        '"\\ud800"',
        "\ufeff{}",
    ],
)
def test_unreadable_bodies_are_422_before_authentication(stack, raw):
    response = requests.post(
        stack.url("/auth/send-code"), data=raw.encode(), headers=JSON, timeout=10
    )

    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("header", "value"),
    [("Content-Length", "9" * 5_000), ("Content-Length", "-1"), ("Content-Length", "1e3")],
)
def test_malformed_length_headers_are_4xx(stack, header, value):
    from http.client import HTTPConnection
    from urllib.parse import urlsplit

    target = urlsplit(stack.url("/auth/send-code"))
    connection = HTTPConnection(target.hostname, target.port, timeout=10)
    connection.putrequest("POST", target.path)
    connection.putheader("Content-Type", "application/json")
    connection.putheader(header, value)
    connection.endheaders()
    connection.send(b'{"phone": "+12015550100"}')
    status = connection.getresponse().status
    connection.close()

    assert 400 <= status < 500


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/users/me/export", {"maxItems": HUGE_INT}),
        ("/users/me/export", {"maxItems": "1e3"}),
        ("/users/me/export", {"maxItems": "Infinity"}),
        ("/users/check-phone", {"phone": "1" * 5_000}),
    ],
)
def test_numbers_and_lengths_in_query_strings_are_422(stack, path, params):
    alice = sign_up(stack)

    response = requests.get(stack.url(path), params=params, headers=alice.headers, timeout=10)

    assert response.status_code == 422, response.text


@pytest.mark.parametrize("value", [HUGE_INT, LONG_FRACTION, "[" * 5_000 + "]" * 5_000])
def test_webhook_bodies_no_parser_can_read_are_422(stack, limits, value):
    limits(LOOPMESSAGE_WEBHOOK_SECRET="hook-secret")
    body = '{"event": "message_inbound", "webhook_id": "w", "contact": ' + value + "}"

    response = requests.post(
        stack.url("/agent/webhook"),
        data=body.encode(),
        headers={"Authorization": "hook-secret", **JSON},
        timeout=10,
    )

    assert response.status_code == 422, response.text
    assert not list(clients.firestore().collection("webhook_events").stream())


def test_nul_and_non_nfc_text_are_stored_as_sent(stack):
    decomposed = "Zoe\u0301"
    alice = sign_up(stack)

    response = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"bio": "a\u0000b", "location": decomposed},
        headers=alice.headers,
        timeout=10,
    )

    assert response.status_code == 200, response.text
    stored = requests.get(stack.url(f"/users/{alice.user_id}"), headers=alice.headers, timeout=10)
    assert (stored.json()["bio"], stored.json()["location"]) == ("a\u0000b", decomposed)


# Ids a client chooses: sessions are per owner, so an id is never taken from its
# later owner, and another user's session is answered exactly like a missing one.

SESSION_CONFIG = {"provider": "openai", "model": "gpt-4.1-mini", "parameters": {}}
OTHER_CONFIG = {"provider": "openai", "model": "gpt-4.1-mini", "parameters": {"temperature": 1}}


def session_call(stack, who, method: str, session_id: str, config=None) -> requests.Response:
    path = f"/sessions/{session_id}" + ("" if method == "DELETE" else "/config")
    return requests.request(method, stack.url(path), json=config, headers=who.headers, timeout=10)


def test_a_session_id_taken_first_by_a_stranger_does_not_block_its_owner(stack, unique):
    mallory, alice = sign_up(stack), sign_up(stack)

    squat = session_call(stack, mallory, "POST", unique, OTHER_CONFIG)
    owner = session_call(stack, alice, "POST", unique, SESSION_CONFIG)

    assert (squat.status_code, owner.status_code) == (200, 200), owner.text
    assert session_call(stack, alice, "GET", unique).json() == SESSION_CONFIG
    assert session_call(stack, mallory, "GET", unique).json() == OTHER_CONFIG
    assert session_call(stack, alice, "DELETE", unique).status_code == 200
    assert session_call(stack, mallory, "GET", unique).json() == OTHER_CONFIG


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_another_users_session_answers_like_a_missing_one(stack, unique, method):
    alice, mallory = sign_up(stack), sign_up(stack)
    assert session_call(stack, alice, "POST", unique, SESSION_CONFIG).status_code == 200
    config = OTHER_CONFIG if method == "POST" else None

    taken = session_call(stack, mallory, method, unique, config)
    free = session_call(stack, mallory, method, f"free{unique}", config)

    assert taken.status_code == free.status_code, taken.text
    assert taken.json() == {**free.json(), **({"session_id": unique} if method == "POST" else {})}
    assert session_call(stack, alice, "GET", unique).json() == SESSION_CONFIG


def test_an_admin_reads_only_their_own_sessions_by_id(stack, unique):
    alice = sign_up(stack)
    minted = mint_token(f"admin-{unique}@example.com", admin=True)
    admin = SignedUp(user_id=minted.uid, phone=None, token=minted.id_token)
    session_call(stack, alice, "POST", unique, SESSION_CONFIG)

    read = session_call(stack, admin, "GET", unique)
    removed = session_call(stack, admin, "DELETE", unique)

    assert (read.status_code, removed.status_code) == (404, 404)
    assert session_call(stack, alice, "GET", unique).json() == SESSION_CONFIG


# Ratings, matches and notifications: a referral claimed by the referred user alone
# changes nothing of the referrer's until the referrer takes part.


def elo(user_id: str) -> int:
    return clients.firestore().collection("users").document(user_id).get().get("elo")


def close_loop(stack, who, source: str, target: str, outcome: str) -> requests.Response:
    return requests.post(
        stack.url("/users/close-loop"),
        params={"sourceId": source, "targetId": target},
        json={"outcome": outcome},
        headers=who.headers,
        timeout=30,
    )


def test_throwaway_referrals_cannot_move_the_referrers_rating(stack):
    victim = sign_up(stack)
    throwaways = [sign_up(stack, metadata={"referredBy": victim.user_id}) for _ in range(4)]

    answers = [
        close_loop(stack, mallory, victim.user_id, mallory.user_id, outcome)
        for mallory in throwaways
        for outcome in ("declined", "accepted", "no_response")
    ]

    assert {answer.status_code for answer in answers} == {409}, answers[0].text
    assert elo(victim.user_id) == 1600
    stored = [match.to_dict() for match in clients.firestore().collection("matches").stream()]
    assert {(m["status"], m["confirmed"]) for m in stored} == {("open", False)}
    assert not list(clients.firestore().collection("notifications").stream())


def test_a_referral_counts_once_its_referrer_confirms_it(stack):
    referrer = sign_up(stack)
    friend = sign_up(stack, metadata={"referredBy": referrer.user_id})

    confirmed = confirm_referral(stack, referrer, friend)
    again = confirm_referral(stack, referrer, friend)
    closed = close_loop(stack, friend, referrer.user_id, friend.user_id, "declined")

    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json() == again.json()
    assert confirmed.json()["confirmed"] is True
    assert closed.status_code == 200, closed.text
    assert (elo(referrer.user_id), elo(friend.user_id)) == (1584, 1616)


def test_the_referrer_closing_an_unconfirmed_referral_takes_part(stack):
    referrer = sign_up(stack)
    friend = sign_up(stack, metadata={"referredBy": referrer.user_id})

    closed = close_loop(stack, referrer, referrer.user_id, friend.user_id, "accepted")

    assert closed.status_code == 200, closed.text
    assert (elo(referrer.user_id), elo(friend.user_id)) == (1616, 1584)


def test_only_the_referrer_may_confirm_a_referral(stack):
    referrer, stranger = sign_up(stack), sign_up(stack)
    friend = sign_up(stack, metadata={"referredBy": referrer.user_id})

    by_referred = confirm_referral(stack, referrer, friend, caller=friend)
    by_stranger = confirm_referral(stack, referrer, friend, caller=stranger)
    reversed_roles = confirm_referral(stack, friend, referrer)
    no_referral = confirm_referral(stack, referrer, stranger)

    assert (by_referred.status_code, by_stranger.status_code) == (403, 403)
    assert (reversed_roles.status_code, no_referral.status_code) == (404, 404)
    match = next(iter(clients.firestore().collection("matches").stream())).to_dict()
    assert match["confirmed"] is False and match["claimedBy"] == friend.user_id


def test_an_archetype_cannot_be_named_as_referrer(stack, unique):
    creator = sign_up(stack)
    admin = bearer(mint_token(f"admin-{unique}@example.com", admin=True).id_token)
    archetype = requests.post(
        stack.url("/users"),
        json={"name": {"first": "Arch"}, "metadata": {"archetype": True}},
        headers=admin,
        timeout=10,
    ).json()["userId"]
    clients.firestore().collection("users").document(archetype).update(
        {"metadata.referredBy": creator.user_id}
    )
    matches_before = len(list(clients.firestore().collection("matches").stream()))

    response = requests.post(
        stack.url("/users"),
        json={"metadata": {"referredBy": archetype}},
        headers=bearer(phone_token(stack, random_number())["token"]),
        timeout=10,
    )

    assert response.status_code == 422, response.text
    assert len(list(clients.firestore().collection("matches").stream())) == matches_before


# Rate limits on what a throwaway account can do cheaply: 429 with Retry-After.


@pytest.fixture
def limits(monkeypatch):
    def apply(**values: int | str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


def create_profile(stack, token: str, **body) -> requests.Response:
    return requests.post(stack.url("/users"), json=body, headers=bearer(token), timeout=10)


def assert_limited(response: requests.Response) -> None:
    assert response.status_code == 429, response.text
    assert 0 < int(response.headers["Retry-After"]) <= 86_400


def test_profiles_per_address_are_limited(stack, limits):
    limits(PROFILES_PER_IP_PER_DAY=2)
    tokens = [phone_token(stack, random_number())["token"] for _ in range(3)]

    answers = [create_profile(stack, token) for token in tokens]

    assert [a.status_code for a in answers[:2]] == [201, 201]
    assert_limited(answers[2])
    assert len(list(clients.firestore().collection("users").stream())) == 2


def test_profiles_per_phone_are_limited_across_deletions(stack, limits):
    limits(PROFILES_PER_PHONE_PER_DAY=1)
    first = fixed_number_token(stack)["token"]
    user_id = create_profile(stack, first).json()["userId"]
    deleted = requests.delete(stack.url("/users/me"), headers=bearer(first), timeout=10)
    assert deleted.status_code == 202, deleted.text
    wait_deleted(user_id)

    again = create_profile(stack, fixed_number_token(stack)["token"])

    assert_limited(again)
    assert not list(clients.firestore().collection("users").stream())


@pytest.mark.parametrize("setting", ["REFERRALS_PER_REFERRER_PER_DAY", "REFERRALS_PER_IP_PER_DAY"])
def test_referral_matches_per_day_are_limited(stack, limits, setting):
    victim = sign_up(stack)
    limits(**{setting: 2})
    tokens = [phone_token(stack, random_number())["token"] for _ in range(3)]

    answers = [
        create_profile(stack, token, metadata={"referredBy": victim.user_id}) for token in tokens
    ]

    assert [a.status_code for a in answers[:2]] == [201, 201]
    assert_limited(answers[2])
    assert len(list(clients.firestore().collection("matches").stream())) == 2
    assert len(list(clients.firestore().collection("users").stream())) == 3


def test_augmentation_runs_per_day_are_limited(stack, limits):
    limits(AUGMENTATIONS_PER_USER_PER_DAY=1)
    alice = sign_up(stack)
    path = stack.url(f"/users/{alice.user_id}/augment")

    first = requests.post(path, headers=alice.headers, timeout=30)
    second = requests.post(path, headers=alice.headers, timeout=30)

    assert first.status_code == 200, first.text
    assert_limited(second)
