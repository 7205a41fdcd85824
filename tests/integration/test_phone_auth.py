"""Phone sign-in through the gateway, with the fake Twilio server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import requests

from shared.platform import clients
from tests.conftest import TEST_NUMBER, TEST_NUMBER_CODE
from tests.integration.helpers import phone_token, random_number


def post(stack, path: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(stack.url(path), json=body, timeout=10, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_full_sign_up_flow(stack):
    phone = random_number()

    sent = post(stack, "/auth/send-code", {"phone": phone})
    assert sent.status_code == 200
    assert sent.json() == {"success": True, "message": "Verification code sent"}
    verified = post(
        stack, "/auth/verify-code", {"phone": phone, "code": stack.twilio.last_code(phone)}
    )
    assert verified.status_code == 200
    token = verified.json()["token"]
    assert verified.json()["user_id"] is None
    assert verified.json()["expires_in"] > 0

    before = requests.get(stack.url("/auth/validate"), headers=bearer(token), timeout=10)
    assert before.json() == {"valid": True, "user_id": None}

    created = post(stack, "/users", {"name": {"first": "Ada"}}, headers=bearer(token))
    assert created.status_code == 201
    user = created.json()
    assert user["phone"] == phone
    assert user["elo"] == 1600
    assert user["name"] == {"first": "Ada", "last": "User"}
    assert user["metadata"]["notes"] == {
        "aiScore": 10,
        "userScore": 10,
        "text": "",
        "flagged": False,
    }

    after = requests.get(stack.url("/auth/validate"), headers=bearer(token), timeout=10)
    assert after.json() == {"valid": True, "user_id": user["userId"]}
    own = requests.get(stack.url(f"/users/{user['userId']}"), headers=bearer(token), timeout=10)
    assert own.status_code == 200

    assert post(stack, "/auth/logout", {"token": token}).status_code == 200
    refused = requests.get(stack.url("/auth/validate"), headers=bearer(token), timeout=10)
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Token revoked"}
    again = requests.get(stack.url(f"/users/{user['userId']}"), headers=bearer(token), timeout=10)
    assert again.status_code == 401


def test_second_sign_in_returns_the_existing_user(stack):
    phone = random_number()
    first = phone_token(stack, phone)
    created = post(stack, "/users", {}, headers=bearer(first["token"]))
    code_doc = clients.firestore().collection("phone_codes").document(phone)
    code_doc.update({"sentAt": datetime.now(UTC) - timedelta(minutes=5)})

    second = phone_token(stack, phone)

    assert second["user_id"] == created.json()["userId"]


def test_code_is_single_use(stack):
    phone = random_number()
    post(stack, "/auth/send-code", {"phone": phone})
    code = stack.twilio.last_code(phone)

    first = post(stack, "/auth/verify-code", {"phone": phone, "code": code})
    replay = post(stack, "/auth/verify-code", {"phone": phone, "code": code})

    assert first.status_code == 200
    assert replay.status_code == 422


def test_brute_force_burns_the_code(stack):
    phone = random_number()
    post(stack, "/auth/send-code", {"phone": phone})
    code = stack.twilio.last_code(phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    answers = [post(stack, "/auth/verify-code", {"phone": phone, "code": wrong}) for _ in range(5)]
    right_too_late = post(stack, "/auth/verify-code", {"phone": phone, "code": code})

    assert [a.status_code for a in answers] == [422] * 5
    assert answers[0].json()["detail"][0]["msg"] == "Incorrect code"
    assert answers[4].json()["detail"][0]["msg"].startswith("Too many incorrect attempts")
    assert right_too_late.status_code == 422
    assert right_too_late.json()["detail"][0]["loc"] == ["body", "code"]


def test_expired_code_is_refused(stack):
    phone = random_number()
    post(stack, "/auth/send-code", {"phone": phone})
    code = stack.twilio.last_code(phone)
    clients.firestore().collection("phone_codes").document(phone).update(
        {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}
    )

    response = post(stack, "/auth/verify-code", {"phone": phone, "code": code})

    assert response.status_code == 422
    assert "expired" in response.json()["detail"][0]["msg"]


def test_codes_are_stored_only_as_hmacs(stack):
    phone = random_number()
    post(stack, "/auth/send-code", {"phone": phone})
    code = stack.twilio.last_code(phone)

    stored = clients.firestore().collection("phone_codes").document(phone).get().to_dict()

    assert code not in str(stored)
    assert len(stored["codeHash"]) == 64


def test_resend_cooldown_answers_429_with_retry_after(stack):
    phone = random_number()
    post(stack, "/auth/send-code", {"phone": phone})

    again = post(stack, "/auth/send-code", {"phone": phone})

    assert again.status_code == 429
    assert 1 <= int(again.headers["Retry-After"]) <= 30
    assert stack.twilio.sent_to(phone) == 1


def test_hourly_limit_per_number(stack):
    phone = random_number()
    code_doc = clients.firestore().collection("phone_codes").document(phone)
    statuses = []
    for _ in range(6):
        statuses.append(post(stack, "/auth/send-code", {"phone": phone}).status_code)
        code_doc.update({"sentAt": datetime.now(UTC) - timedelta(minutes=1)})

    assert statuses == [200] * 5 + [429]
    assert stack.twilio.sent_to(phone) == 5


def test_hourly_limit_per_address(stack):
    busy = {"X-Forwarded-For": "203.0.113.7"}
    statuses = [
        post(stack, "/auth/send-code", {"phone": random_number()}, headers=busy).status_code
        for _ in range(21)
    ]
    other = post(
        stack,
        "/auth/send-code",
        {"phone": random_number()},
        headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.2"},
    )

    assert statuses == [200] * 20 + [429]
    assert other.status_code == 200


def test_invalid_phone_is_422(stack):
    response = post(stack, "/auth/send-code", {"phone": "12345"})

    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "phone"], "msg": "Invalid phone number", "type": "value_error"}
    ]


def test_malformed_code_is_422(stack):
    response = post(stack, "/auth/verify-code", {"phone": random_number(), "code": "12ab"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "code"]


def test_test_number_uses_fixed_code_and_sends_nothing(stack):
    sent = post(stack, "/auth/send-code", {"phone": "(201) 555-0100"})
    verified = post(stack, "/auth/verify-code", {"phone": TEST_NUMBER, "code": TEST_NUMBER_CODE})

    assert sent.status_code == 200
    assert verified.status_code == 200
    assert stack.twilio.sent_to(TEST_NUMBER) == 0


def test_test_number_is_exempt_from_send_limits_but_not_from_wrong_attempts(stack):
    busy = {"X-Forwarded-For": "203.0.113.8"}
    sends = [
        post(stack, "/auth/send-code", {"phone": TEST_NUMBER}, headers=busy).status_code
        for _ in range(22)  # past the cooldown, the hourly cap per number and per address
    ]
    wrong = [
        post(stack, "/auth/verify-code", {"phone": TEST_NUMBER, "code": "000000"}) for _ in range(5)
    ]
    right_too_late = post(
        stack, "/auth/verify-code", {"phone": TEST_NUMBER, "code": TEST_NUMBER_CODE}
    )
    resent = post(stack, "/auth/send-code", {"phone": TEST_NUMBER}, headers=busy)
    verified = post(stack, "/auth/verify-code", {"phone": TEST_NUMBER, "code": TEST_NUMBER_CODE})

    assert sends == [200] * 22
    assert [w.status_code for w in wrong] == [422] * 5
    assert wrong[4].json()["detail"][0]["msg"].startswith("Too many incorrect attempts")
    assert right_too_late.status_code == 422
    assert resent.status_code == 200
    assert verified.status_code == 200
    assert stack.twilio.sent_to(TEST_NUMBER) == 0


def test_sms_failure_is_503_and_leaves_no_usable_code(stack):
    phone = random_number()
    stack.twilio.failing = True

    response = post(stack, "/auth/send-code", {"phone": phone})

    assert response.status_code == 503
    stored = clients.firestore().collection("phone_codes").document(phone).get().to_dict()
    assert "codeHash" not in stored


def test_logout_of_unknown_token_is_harmless(stack):
    response = post(stack, "/auth/logout", {"token": "never-issued"})

    assert response.status_code == 200


def test_expired_session_token_is_refused(stack):
    issued = phone_token(stack, random_number())
    from shared.platform.auth import hash_token

    clients.firestore().collection("auth_tokens").document(hash_token(issued["token"])).update(
        {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}
    )

    response = requests.get(
        stack.url("/auth/validate"), headers=bearer(issued["token"]), timeout=10
    )

    assert response.status_code == 401
    assert response.json() == {"detail": "Token expired"}
