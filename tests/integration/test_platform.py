"""The platform layer against the real emulators."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from firebase_admin import auth as firebase_auth

from devstack.tokens import mint_token
from shared.platform import auth, clients, tasks
from shared.platform.config import get_settings
from shared.platform.errors import Unauthorized
from tests.conftest import PROBE_QUEUE
from tests.fakes.tokens import unsigned_jwt


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_firestore_round_trip(stack, unique):
    ref = clients.firestore().collection("roundtrip").document(unique)

    ref.set({"name": "Ada", "score": 3})
    ref.update({"score": 4})

    assert ref.get().to_dict() == {"name": "Ada", "score": 4}


def test_storage_upload_download(stack, unique):
    client = clients.storage()
    bucket = client.bucket(f"bucket-{unique}")
    client.create_bucket(bucket)
    blob = bucket.blob(f"dir/{unique}.bin")

    blob.upload_from_string(b"\x00\x01payload", content_type="application/octet-stream")

    fetched = bucket.get_blob(f"dir/{unique}.bin")
    assert fetched.download_as_bytes() == b"\x00\x01payload"
    assert fetched.content_type == "application/octet-stream"


def test_enqueued_task_reaches_its_worker(stack, unique):
    tasks.enqueue(PROBE_QUEUE, {"marker": unique})

    ref = clients.firestore().collection("probe_runs").document(unique)
    snapshot = wait_for(lambda: ref.get().exists and ref.get())

    assert snapshot.to_dict()["queue"] == PROBE_QUEUE


def test_worker_refuses_task_with_wrong_signature(stack, unique, caplog):
    from google.cloud import tasks_v2

    client = clients.tasks()
    settings = get_settings()
    body = json.dumps({"marker": unique}).encode()
    forged = tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=tasks.worker_url(PROBE_QUEUE),
            headers={tasks.SIGNATURE_HEADER: "v1=" + "0" * 64},
            body=body,
        )
    )
    parent = client.queue_path(settings.project_id, settings.tasks_location, PROBE_QUEUE)

    client.create_task(parent=parent, task=forged)

    assert wait_for(lambda: "task refused: missing or bad signature" in caplog.text)
    ref = clients.firestore().collection("probe_runs").document(unique)
    assert not ref.get().exists


def test_worker_refuses_unsigned_request(stack, unique):
    response = requests.post(
        stack.url("/_functions/probe_worker"), json={"marker": unique}, timeout=10
    )

    assert response.status_code == 401
    assert not clients.firestore().collection("probe_runs").document(unique).get().exists


def test_worker_drops_bad_payload_without_retry(stack):
    body = json.dumps({"unexpected": 1}).encode()

    response = requests.post(
        stack.url("/_functions/probe_worker"),
        data=body,
        headers={tasks.SIGNATURE_HEADER: tasks.sign(body)},
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json() == {"status": "dropped"}


def test_duplicate_dedup_name_is_not_an_error(stack, unique):
    first = tasks.enqueue(PROBE_QUEUE, {"marker": unique}, dedup_name=f"probe-{unique}")
    second = tasks.enqueue(PROBE_QUEUE, {"marker": unique}, dedup_name=f"probe-{unique}")

    assert first.endswith(f"/tasks/probe-{unique}")
    assert second == first


def test_firebase_id_token_is_accepted(stack, unique):
    user = mint_token(f"{unique}@example.com")

    principal = auth.authenticate(f"Bearer {user.id_token}")

    assert principal.kind == "firebase"
    assert principal.user_id == user.uid
    assert principal.email == f"{unique}@example.com"
    assert principal.is_admin is False


def test_admin_claim_is_honoured(stack, unique):
    user = mint_token(f"{unique}@example.com", admin=True)

    principal = auth.authenticate(f"Bearer {user.id_token}")

    assert principal.is_admin is True


def test_admin_role_on_user_document_is_honoured(stack, unique):
    user = mint_token(f"{unique}@example.com")
    clients.firestore().collection("users").document(user.uid).set({"roles": ["admin"]})

    principal = auth.authenticate(f"Bearer {user.id_token}")

    assert principal.is_admin is True


def test_revoked_token_is_refused(stack, unique):
    user = mint_token(f"{unique}@example.com")
    time.sleep(1.1)  # revocation has one-second granularity
    firebase_auth.revoke_refresh_tokens(user.uid, app=clients.firebase_app())

    with pytest.raises(Unauthorized, match="revoked"):
        auth.authenticate(f"Bearer {user.id_token}")


def test_token_of_disabled_user_is_refused(stack, unique):
    user = mint_token(f"{unique}@example.com")
    firebase_auth.update_user(user.uid, disabled=True, app=clients.firebase_app())

    with pytest.raises(Unauthorized, match="disabled"):
        auth.authenticate(f"Bearer {user.id_token}")


def _emulator_style_token(uid: str, *, lifetime: int) -> str:
    project = get_settings().project_id
    time.sleep(2.1)  # issue it after the account's tokens-valid-after second
    issued = int(time.time()) - 1
    return unsigned_jwt(
        {
            "iss": f"https://securetoken.google.com/{project}",
            "aud": project,
            "sub": uid,
            "user_id": uid,
            "auth_time": issued,
            "iat": issued,
            "exp": issued + lifetime,
        }
    )


def test_expired_token_is_refused(stack, unique):
    user = mint_token(f"{unique}@example.com")
    fresh = _emulator_style_token(user.uid, lifetime=3600)
    expired = _emulator_style_token(user.uid, lifetime=0)

    assert auth.authenticate(f"Bearer {fresh}").user_id == user.uid
    with pytest.raises(Unauthorized, match="expired"):
        auth.authenticate(f"Bearer {expired}")


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic abc", "Bearer not.a.jwt", "Bearer opaque-but-unknown"],
)
def test_garbage_credentials_are_refused(stack, header):
    with pytest.raises(Unauthorized):
        auth.authenticate(header)


def test_phone_session_token_is_accepted_until_expiry(stack, unique):
    tokens = clients.firestore().collection(auth.AUTH_TOKENS)
    live, stale = f"live-{unique}", f"stale-{unique}"
    now = datetime.now(UTC)
    tokens.document(auth.hash_token(live)).set(
        {"userId": unique, "phone": "+15555550100", "expiresAt": now + timedelta(hours=1)}
    )
    tokens.document(auth.hash_token(stale)).set(
        {"userId": unique, "phone": "+15555550100", "expiresAt": now - timedelta(seconds=1)}
    )

    principal = auth.authenticate(f"Bearer {live}")

    assert (principal.kind, principal.user_id) == ("phone", unique)
    with pytest.raises(Unauthorized, match="expired"):
        auth.authenticate(f"Bearer {stale}")


def test_revoked_phone_session_token_is_refused(stack, unique):
    token = f"revoked-{unique}"
    clients.firestore().collection(auth.AUTH_TOKENS).document(auth.hash_token(token)).set(
        {
            "userId": unique,
            "expiresAt": datetime.now(UTC) + timedelta(hours=1),
            "revoked": True,
        }
    )

    with pytest.raises(Unauthorized):
        auth.authenticate(f"Bearer {token}")


@pytest.fixture
def one_second_token_cache(monkeypatch):
    from shared.platform.config import get_settings

    monkeypatch.setenv("TOKEN_CACHE_SECONDS", "1")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_token_revoked_elsewhere_is_refused_once_the_cache_window_ends(
    stack, unique, one_second_token_cache
):
    user = mint_token(f"{unique}@example.com")
    time.sleep(1.1)  # revocation has one-second granularity
    auth.authenticate(f"Bearer {user.id_token}")
    firebase_auth.revoke_refresh_tokens(user.uid, app=clients.firebase_app())

    within_window = auth.authenticate(f"Bearer {user.id_token}")
    time.sleep(1.1)

    assert within_window.user_id == user.uid
    with pytest.raises(Unauthorized, match="revoked"):
        auth.authenticate(f"Bearer {user.id_token}")


def test_logout_refuses_the_token_at_once_in_the_instance_that_saw_it(stack, unique):
    token = f"bound-{unique}"
    clients.firestore().collection(auth.AUTH_TOKENS).document(auth.hash_token(token)).set(
        {
            "userId": unique,
            "phone": "+15555550100",
            "expiresAt": datetime.now(UTC) + timedelta(hours=1),
        }
    )
    auth.authenticate(f"Bearer {token}")

    logged_out = requests.post(stack.url("/auth/logout"), json={"token": token}, timeout=10)

    assert logged_out.status_code == 200
    with pytest.raises(Unauthorized, match="revoked"):
        auth.authenticate(f"Bearer {token}")


def test_the_admin_role_is_not_remembered_with_the_token(stack, unique):
    user = mint_token(f"{unique}@example.com")
    users = clients.firestore().collection("users")
    users.document(user.uid).set({"roles": []})
    assert auth.authenticate(f"Bearer {user.id_token}").is_admin is False

    users.document(user.uid).set({"roles": ["admin"]})

    assert auth.authenticate(f"Bearer {user.id_token}").is_admin is True
