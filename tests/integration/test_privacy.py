"""Account deletion and personal data export, end to end through the gateway and the emulators.

The deletion checks walk every collection of the Firestore emulator (root
collections and every sub-collection, recursively) and every object of
every bucket, so data kept in a collection nobody thought of fails them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest
import requests
from google.cloud.firestore import FieldFilter

from devstack.tokens import mint_token
from shared.platform import clients
from shared.platform.auth import hash_token
from shared.platform.config import get_settings
from shared.platform.tasks import SIGNATURE_HEADER, sign
from shared.privacy.worker import STEPS
from shared.social import matches
from tests.conftest import TEST_NUMBER, TEST_NUMBER_CODE
from tests.integration.helpers import (
    SignedUp,
    confirm_referral,
    phone_token,
    random_number,
    sign_up,
    web_sign_up,
)
from tests.integration.test_agents import new_agent
from tests.integration.test_augment import ARCHETYPE, network, wait_run
from tests.integration.test_chat import chat_body, wait_ticket
from tests.integration.test_demos import demo_body
from tests.integration.test_imessage import REPLY, fake, legacy, loop, post, wait_sent
from tests.integration.test_photos import jpeg, upload
from tests.integration.test_users import close_loop

__all__ = ["fake", "loop"]  # fixtures used here

QUEUE = "account-deletion"


@dataclass
class Victim:
    """A user holding every kind of data, and the people around them."""

    user: SignedUp
    referrer: SignedUp
    friend: SignedUp
    pending_token: str
    photo_urls: list[str]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(stack, method: str, path: str, headers: dict | None = None, **kwargs):
    return requests.request(method, stack.url(path), headers=headers or {}, timeout=60, **kwargs)


def ok(response: requests.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def fixed_number_token(stack) -> dict:
    ok(call(stack, "POST", "/auth/send-code", json={"phone": TEST_NUMBER}))
    verify = {"phone": TEST_NUMBER, "code": TEST_NUMBER_CODE}
    return ok(call(stack, "POST", "/auth/verify-code", json=verify))


def everything(stack, fake, unique: str) -> Victim:
    """Build a phone user with data in every collection and bucket the code defines."""
    referrer = sign_up(stack)
    phone = TEST_NUMBER  # a fixed code and no resend cooldown: two sessions
    pending_token = fixed_number_token(stack)["token"]
    pending_photo = upload(stack, SignedUp("", phone, pending_token), jpeg())
    pending_url = ok(pending_photo)["image_url"]
    left_pending = ok(upload(stack, SignedUp("", phone, pending_token), jpeg()))["image_url"]
    stack.llm.reply = json.dumps(ARCHETYPE)
    created = requests.post(
        stack.url("/users"),
        json={
            "name": {"first": "Vic", "last": "Tim"},
            "profilePic": pending_url,
            "metadata": {"referredBy": referrer.user_id, "network": network(unique, 2)},
        },
        headers=auth(pending_token),
        timeout=30,
    )
    user = SignedUp(ok(created, 201)["userId"], phone, pending_token)
    second_session = fixed_number_token(stack)["token"]
    assert second_session != pending_token
    photo = ok(upload(stack, user, jpeg()))["image_url"]
    ok(call(stack, "POST", f"/users/{user.user_id}/augment", user.headers))
    wait_run(stack, user)
    friend = sign_up(stack, metadata={"referredBy": user.user_id})
    ok(confirm_referral(stack, user, friend))
    ok(close_loop(stack, friend, friend.user_id, user.user_id))

    ok(call(stack, "GET", "/users/me", user.headers))
    usage = {"responseCost": 0.01, "metadata": {"feature": "demo"}}
    ok(call(stack, "POST", "/users/me/usage", user.headers, json=usage))
    ticket = ok(call(stack, "POST", "/chat", user.headers, json=chat_body()))
    wait_ticket(stack, user.headers, ticket["ticket_id"])
    config = {"provider": "openai", "model": "gpt-4.1-mini", "parameters": {}}
    ok(call(stack, "POST", f"/sessions/{unique}/config", user.headers, json=config))
    agent = new_agent(stack, user.headers, friendlyName=f"echo-{unique[:8]}")
    deployed = call(stack, "POST", f"/agents/{agent['_id']}/deploy", user.headers)
    ok(deployed, 201)
    ok(call(stack, "POST", "/demos", user.headers, json=demo_body()), 201)
    record = requests.put(
        stack.url("/data-store/namespaces/notes/records/first"),
        json={"value": {"text": f"note of {user.user_id}"}},
        headers=user.headers,
        timeout=10,
    )
    ok(record)

    stack.llm.reply = json.dumps(REPLY)
    ok(post(stack, legacy(phone, "hello from the victim")))
    wait_sent(fake, phone, 2)  # the referrer notification and the concierge's reply

    ok(call(stack, "GET", "/users/me", referrer.headers))
    new_agent(stack, referrer.headers, friendlyName=f"kept-{unique[:8]}")
    return Victim(user, referrer, friend, second_session, [pending_url, left_pending, photo])


def stored_documents() -> list[tuple[str, dict]]:
    """Every document of the Firestore emulator, with its path (sub-collections included)."""
    found: list[tuple[str, dict]] = []

    def walk(collections) -> None:
        for collection in collections:
            for ref in collection.list_documents():
                found.append((ref.path, ref.get().to_dict() or {}))
                walk(ref.collections())

    walk(clients.firestore().collections())
    return found


def stored_objects() -> list[tuple[str, str, dict]]:
    """Every object of every bucket: bucket, name and metadata."""
    storage = clients.storage()
    return [
        (bucket.name, blob.name, dict(blob.metadata or {}))
        for bucket in storage.list_buckets()
        for blob in storage.list_blobs(bucket.name)
    ]


def mentions(values: list[str]) -> list[str]:
    """Every document or object that holds one of `values` anywhere (path, key or value)."""
    found = []
    for path, data in stored_documents():
        text = path + json.dumps(data, default=str)
        found += [f"{path}: {value}" for value in values if value in text]
    for bucket, name, metadata in stored_objects():
        text = name + json.dumps(metadata)
        found += [f"{bucket}/{name}: {value}" for value in values if value in text]
    return found


def wait_deleted(user_id: str, timeout: float = 120.0) -> None:
    ref = clients.firestore().collection("deletions").document(user_id)
    deadline = time.monotonic() + timeout
    while ref.get().exists:
        assert time.monotonic() < deadline, ref.get().to_dict()
        time.sleep(0.2)


def firebase_user_exists(uid: str) -> bool:
    from firebase_admin import auth as firebase_auth

    try:
        firebase_auth.get_user(uid, app=clients.firebase_app())
    except firebase_auth.UserNotFoundError:
        return False
    return True


def queue_path() -> str:
    settings = get_settings()
    return clients.tasks().queue_path(settings.project_id, settings.tasks_location, QUEUE)


def deliver(stack, user_id: str, retry: int = 0) -> requests.Response:
    """Deliver a deletion task to the worker, as Cloud Tasks does."""
    body = json.dumps({"userId": user_id}, separators=(",", ":"), sort_keys=True).encode()
    return requests.post(
        stack.url("/_functions/deletion_worker"),
        data=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body),
            "X-CloudTasks-TaskRetryCount": str(retry),
        },
        timeout=120,
    )


def test_deleting_a_user_leaves_nothing_of_theirs_anywhere(stack, fake, unique):
    victim = everything(stack, fake, unique)
    user = victim.user
    archetypes = [
        doc.id
        for doc in clients.firestore()
        .collection("users")
        .where(filter=FieldFilter("metadata.referredBy", "==", user.user_id))
        .stream()
        if doc.to_dict()["metadata"].get("archetype")
    ]
    assert len(archetypes) == 2
    admin = SignedUp("", "", mint_token(f"admin-{unique}@example.com", admin=True).id_token)
    ok(upload(stack, admin, jpeg(), user_id=archetypes[0]))  # admins may, for any user
    pending_key = hash_token(user.token)[:32]
    before = mentions([user.user_id, user.phone, pending_key, *archetypes])
    assert any(name.startswith(f"pending/{pending_key}/") for _, name, _ in stored_objects())
    assert len(before) > 20, before

    deleted = call(stack, "DELETE", "/users/me", user.headers)

    assert ok(deleted, 202) == {"userId": user.user_id, "status": "deleting"}
    refused = call(stack, "GET", "/users/me", user.headers)
    other_session = call(stack, "GET", "/users/me", auth(victim.pending_token))
    assert refused.status_code == 401
    assert other_session.status_code == 401
    wait_deleted(user.user_id)
    assert mentions([user.user_id, user.phone, pending_key, *archetypes]) == []
    assert not any(name.startswith(f"pending/{pending_key}") for _, name, _ in stored_objects())
    # The other parties keep their side, with a tombstone in the deleted user's place.
    kept = [
        doc.to_dict()
        for doc in clients.firestore().collection("matches").stream()
        if victim.referrer.user_id in doc.to_dict()["users"]
        or victim.friend.user_id in doc.to_dict()["users"]
    ]
    assert len(kept) == 2
    for match in kept:
        assert any(party.startswith("deleted-") for party in match["users"])
    friend = call(stack, "GET", f"/users/{victim.friend.user_id}", victim.friend.headers)
    assert ok(friend)["metadata"]["referredBy"].startswith("deleted-")
    referrer_profile = call(
        stack, "GET", f"/users/{victim.referrer.user_id}", victim.referrer.headers
    )
    assert ok(referrer_profile)["userId"] == victim.referrer.user_id
    agents = ok(call(stack, "GET", "/agents", victim.referrer.headers))
    assert len(agents) == 1
    # Signing in again with the phone makes a new, empty session: the old user is gone.
    fresh = fixed_number_token(stack)
    assert fresh["user_id"] is None


def test_a_firebase_user_is_refused_at_once_and_cannot_sign_in_after(stack, unique):
    email = f"leaving-{unique}@example.com"
    user = web_sign_up(stack, email)
    ok(call(stack, "GET", "/users/me", user.headers))
    new_agent(stack, user.headers)
    other = web_sign_up(stack, f"staying-{unique}@example.com")
    new_agent(stack, other.headers)

    ok(call(stack, "DELETE", "/users/me", user.headers), 202)
    refused = call(stack, "GET", "/users/me", user.headers)

    assert refused.status_code == 401
    wait_deleted(user.user_id)
    assert not firebase_user_exists(user.user_id)
    assert call(stack, "GET", "/agents", user.headers).status_code == 401
    assert mentions([user.user_id, email]) == []
    host = stack.env["FIREBASE_AUTH_EMULATOR_HOST"]
    signed_in = requests.post(
        f"http://{host}/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=k",
        json={"email": email, "password": "local-password", "returnSecureToken": True},
        timeout=10,
    )
    assert signed_in.status_code == 400
    assert len(ok(call(stack, "GET", "/agents", other.headers))) == 1


def test_an_unverified_email_reaches_no_one_elses_conversation(stack, fake, unique):
    texter = f"texter-{unique}@example.com"
    stack.llm.reply = json.dumps(REPLY)
    ok(post(stack, legacy(texter, "between me and the concierge")))
    wait_sent(fake, texter)
    impostor = web_sign_up(stack, texter, verified=False)

    archive = ok(call(stack, "GET", "/users/me/export", impostor.headers))
    ok(call(stack, "DELETE", "/users/me", impostor.headers), 202)
    wait_deleted(impostor.user_id)

    assert archive["conversations"] == []
    conversation = clients.firestore().collection("conversations").document(texter).get()
    assert conversation.exists
    assert conversation.reference.collection("messages").get()


def test_a_deletion_interrupted_after_its_first_steps_resumes_on_retry(stack, unique):
    from google.cloud import tasks_v2

    user = web_sign_up(stack, f"crash-{unique}@example.com")
    ok(call(stack, "GET", "/users/me", user.headers))
    new_agent(stack, user.headers)
    tasks = clients.tasks()
    tasks.pause_queue(request=tasks_v2.PauseQueueRequest(name=queue_path()))
    try:
        ok(call(stack, "DELETE", "/users/me", user.headers), 202)
        # The first delivery runs a task's share of the steps and stops, as a worker
        # that timed out or crashed would; its task stays queued for a retry.
        first = deliver(stack, user.user_id)
        assert ok(first) == {"status": "done"}
        record = clients.firestore().collection("deletions").document(user.user_id).get()
        done = record.to_dict()["done"]
        assert done == [name for name, _ in STEPS[: len(done)]] and 0 < len(done) < len(STEPS)
        assert not clients.firestore().collection("users").document(user.user_id).get().exists
        assert clients.firestore().collection("accounts").document(user.user_id).get().exists
        assert call(stack, "GET", "/users/me", user.headers).status_code == 401
    finally:
        tasks.resume_queue(request=tasks_v2.ResumeQueueRequest(name=queue_path()))

    wait_deleted(user.user_id)
    assert mentions([user.user_id]) == []
    assert not firebase_user_exists(user.user_id)
    assert ok(deliver(stack, user.user_id, retry=3)) == {"status": "done"}  # a late duplicate
    assert mentions([user.user_id]) == []


def test_an_admin_restarts_a_deletion_the_queue_gave_up_on(stack, unique):
    from google.cloud import tasks_v2

    user = web_sign_up(stack, f"stuck-{unique}@example.com")
    ok(call(stack, "GET", "/users/me", user.headers))
    admin = mint_token(f"admin-{unique}@example.com", admin=True)
    tasks = clients.tasks()
    tasks.pause_queue(request=tasks_v2.PauseQueueRequest(name=queue_path()))
    try:
        ok(call(stack, "DELETE", "/users/me", user.headers), 202)
        # The queue gives up on the task (its retries ran out): it is gone, the user half there.
        tasks.purge_queue(request=tasks_v2.PurgeQueueRequest(name=queue_path()))
        assert not list(tasks.list_tasks(parent=queue_path()))
        assert clients.firestore().collection("accounts").document(user.user_id).get().exists
        assert call(stack, "DELETE", "/users/me", user.headers).status_code == 401
        restarted = call(stack, "DELETE", f"/users/{user.user_id}", auth(admin.id_token))
    finally:
        tasks.resume_queue(request=tasks_v2.ResumeQueueRequest(name=queue_path()))

    assert ok(restarted, 202) == {"userId": user.user_id, "status": "deleting"}
    wait_deleted(user.user_id)
    assert mentions([user.user_id]) == []
    assert not firebase_user_exists(user.user_id)


def test_a_match_closed_while_its_party_is_deleted_keeps_its_outcome(stack, monkeypatch):
    referrer = sign_up(stack)
    friend = sign_up(stack, metadata={"referredBy": referrer.user_id})
    ok(confirm_referral(stack, referrer, friend))
    read_matches = matches._matches_of
    closed: list[str] = []

    class ClosedAfterRead:
        """The deletion's first read of the matches, with a close-loop right after it."""

        def __init__(self, user_id: str) -> None:
            self.query = read_matches(user_id)

        def limit(self, count: int) -> ClosedAfterRead:
            self.query = self.query.limit(count)
            return self

        def stream(self):
            snapshots = list(self.query.stream())
            if not closed:
                closed.append(
                    ok(close_loop(stack, friend, friend.user_id, referrer.user_id))["status"]
                )
            return iter(snapshots)

    monkeypatch.setattr(matches, "_matches_of", ClosedAfterRead)

    matches.delete_user_data(referrer.user_id, f"deleted-{referrer.user_id}")

    assert closed == ["closed"]
    moved = (
        clients.firestore()
        .collection("matches")
        .document(matches.match_id(friend.user_id, f"deleted-{referrer.user_id}"))
    )
    kept = moved.get().to_dict()
    assert kept["status"] == "closed" and kept["outcome"] == "accepted"
    assert kept["eloChange"][f"deleted-{referrer.user_id}"] == -kept["eloChange"][friend.user_id]
    original = matches.match_id(friend.user_id, referrer.user_id)
    assert not clients.firestore().collection("matches").document(original).get().exists


def test_only_admins_delete_other_users(stack, unique):
    alice = sign_up(stack)
    bob = sign_up(stack)
    admin = mint_token(f"admin-{unique}@example.com", admin=True)

    anonymous = requests.delete(stack.url(f"/users/{alice.user_id}"), timeout=10)
    by_bob = call(stack, "DELETE", f"/users/{alice.user_id}", bob.headers)
    unknown = call(stack, "DELETE", f"/users/nobody-{unique}", auth(admin.id_token))
    by_admin = call(stack, "DELETE", f"/users/{alice.user_id}", auth(admin.id_token))

    assert anonymous.status_code == 401
    assert by_bob.status_code == 403
    assert unknown.status_code == 404
    assert ok(by_admin, 202)["userId"] == alice.user_id
    wait_deleted(alice.user_id)
    assert mentions([alice.user_id, alice.phone]) == []
    assert call(stack, "GET", "/users/me", alice.headers).status_code == 401
    assert ok(call(stack, "GET", f"/users/{bob.user_id}", bob.headers))


def test_deletion_and_export_need_a_user_and_refuse_bad_input(stack):
    unbound = phone_token(stack, random_number())["token"]

    assert requests.delete(stack.url("/users/me"), timeout=10).status_code == 401
    assert requests.get(stack.url("/users/me/export"), timeout=10).status_code == 401
    assert call(stack, "DELETE", "/users/me", auth(unbound)).status_code == 404
    assert call(stack, "GET", "/users/me/export", auth(unbound)).status_code == 404
    user = sign_up(stack)
    with_query = call(stack, "GET", "/users/me/export?everything=1", user.headers)
    too_few = call(stack, "GET", "/users/me/export?maxItems=0", user.headers)
    assert with_query.status_code == 422
    assert too_few.status_code == 422
    unsigned = requests.post(
        stack.url("/_functions/deletion_worker"), json={"userId": user.user_id}, timeout=10
    )
    malformed = deliver(stack, "not a valid id!")
    assert unsigned.status_code == 401
    assert ok(malformed) == {"status": "dropped"}
    assert ok(call(stack, "GET", "/users/me", user.headers))


def test_export_holds_every_kind_of_data(stack, fake, unique):
    victim = everything(stack, fake, unique)
    user = victim.user

    archive = ok(call(stack, "GET", "/users/me/export", user.headers))

    assert archive["userId"] == user.user_id
    assert archive["profile"]["phone"] == user.phone
    assert archive["profile"]["metadata"]["created_ts"].endswith("+00:00")
    assert archive["truncated"] == []
    for section in (
        "archetypes",
        "usage",
        "phoneSessions",
        "tickets",
        "sessions",
        "agents",
        "deployments",
        "demos",
        "conversations",
        "matches",
        "notifications",
        "augmentationResults",
        "photos",
    ):
        assert archive[section], section
    assert archive["account"]["userId"] == user.user_id
    assert archive["dataStore"]["records"] and archive["dataStore"]["namespaces"]
    assert len(archive["archetypes"]) == 2
    assert len(archive["matches"]) == 4  # the referrer, the friend and two archetypes
    assert len(archive["phoneSessions"]) == 2
    assert all("token" not in str(session).lower() for session in archive["phoneSessions"])
    assert archive["conversations"][0]["messages"][0]["text"] == "hello from the victim"
    assert [notice["to"] for notice in archive["notifications"]] == [user.phone]
    names = {photo["object"] for photo in archive["photos"]}
    assert any(name.startswith(f"profiles/{user.user_id}/") for name in names)
    assert any(name.startswith("pending/") for name in names)
    image = requests.get(archive["photos"][0]["url"], timeout=10)
    assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"
    capped = ok(call(stack, "GET", "/users/me/export?maxItems=2", user.headers))
    assert capped["maxItems"] == 2
    assert "matches" in capped["truncated"] and len(capped["matches"]) == 2
    # Lists holding exactly the cap are complete, and not called cut.
    assert len(capped["archetypes"]) == len(capped["phoneSessions"]) == 2
    assert not {"archetypes", "phoneSessions"} & set(capped["truncated"])
    other = ok(call(stack, "GET", "/users/me/export", victim.friend.headers))
    assert other["profile"]["userId"] == victim.friend.user_id
    assert other["agents"] == [] and other["conversations"] == []
    assert len(other["matches"]) == 1 and other["notifications"] == []  # the victim's phone


@pytest.mark.parametrize("token_kind", ["firebase", "phone"])
def test_deleting_twice_is_harmless(stack, unique, token_kind):
    if token_kind == "firebase":
        user = web_sign_up(stack, f"twice-{unique}@example.com")
    else:
        user = sign_up(stack)

    first = call(stack, "DELETE", "/users/me", user.headers)
    second = call(stack, "DELETE", "/users/me", user.headers)

    assert ok(first, 202)["status"] == "deleting"
    assert second.status_code == 401
    wait_deleted(user.user_id)
    assert mentions([user.user_id]) == []
    assert not firebase_user_exists(user.user_id)
