"""LinkedIn augmentation through the gateway, the Tasks emulator, fake PDL and a fake model."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from google.cloud.firestore_v1.base_query import FieldFilter

from devstack.tokens import mint_token
from shared.platform import clients
from shared.platform.tasks import SIGNATURE_HEADER, sign
from tests.integration.helpers import SignedUp, sign_up, web_sign_up

# The fake model reports 1200 input and 300 output tokens for every call.
GEMINI_FLASH_COST = (1200 * 0.30 + 300 * 2.50) / 1_000_000
ARCHETYPE = {
    "name": {"first": "Ada", "last": "Archetype"},
    "bio": "Ada builds products. She likes long walks.",
    "probability": 0.7,
}


def network(unique: str, count: int) -> list[dict]:
    return [
        {"name": f"Contact {n}", "email": f"contact{n}-{unique}@example.com", "timeSpent": n}
        for n in range(count)
    ]


def augmented_user(stack, unique: str, contacts: int) -> tuple[SignedUp, list[dict]]:
    stack.llm.reply = json.dumps(ARCHETYPE)
    people = network(unique, contacts)
    user = web_sign_up(
        stack,
        f"owner-{unique}@example.com",
        name={"first": "Olive", "last": "Owner"},
        metadata={"network": people},
    )
    return user, people


def augment(stack, user: SignedUp) -> dict:
    response = requests.post(
        stack.url(f"/users/{user.user_id}/augment"), headers=user.headers, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_run(stack, user: SignedUp, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        profile = requests.get(
            stack.url(f"/users/{user.user_id}"), headers=user.headers, timeout=10
        ).json()
        run = profile["metadata"]["augmentation"]
        if run["finished_at"] is not None:
            return run
        time.sleep(0.2)
    raise AssertionError(f"augmentation still {run}")


def archetypes_of(user_id: str) -> list[dict]:
    query = (
        clients.firestore()
        .collection("users")
        .where(filter=FieldFilter("metadata.referredBy", "==", user_id))
    )
    return [doc.to_dict() for doc in query.stream()]


def matches_of(user_id: str) -> list[dict]:
    query = (
        clients.firestore()
        .collection("matches")
        .where(filter=FieldFilter("users", "array_contains", user_id))
    )
    return [doc.to_dict() for doc in query.stream()]


def redeliver(stack, payloads: list[dict]) -> set[int]:
    """Deliver tasks again, as Cloud Tasks does after a lost acknowledgement."""

    def deliver(payload: dict) -> int:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return requests.post(
            stack.url("/_functions/archetype_worker"),
            data=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body),
                "X-CloudTasks-TaskRetryCount": "1",
            },
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(deliver, payloads))


def task_payloads(user_id: str, run_id: str, people: list[dict]) -> list[dict]:
    own = {"userId": user_id, "runId": run_id, "index": 0, "contact": None}
    return [own] + [
        {"userId": user_id, "runId": run_id, "index": n + 1, "contact": person}
        for n, person in enumerate(people)
    ]


def test_augment_creates_one_archetype_and_match_per_contact(stack, unique):
    user, _ = augmented_user(stack, unique, 25)

    queued = augment(stack, user)
    run = wait_run(stack, user)

    started = queued["metadata"]["augmentation"]
    assert (started["status"], started["total"], started["done"], started["failed"]) == (
        "queued",
        26,
        0,
        0,
    )
    assert (run["status"], run["total"], run["done"], run["failed"]) == ("completed", 26, 26, 0)
    assert run["enrichment"] == "matched"
    archetypes = archetypes_of(user.user_id)
    assert len(archetypes) == 25
    assert all(a["metadata"]["archetype"] is True for a in archetypes)
    assert {a["name"]["first"] for a in archetypes} == {"Ada"}
    found = matches_of(user.user_id)
    assert len(found) == 25
    assert {m["source"] for m in found} == {"archetype"}
    assert {m["probability"] for m in found} == {0.7}
    assert {m["users"][0] if m["users"][1] == user.user_id else m["users"][1] for m in found} == {
        a["userId"] for a in archetypes
    }
    profile = requests.get(
        stack.url(f"/users/{user.user_id}"), headers=user.headers, timeout=10
    ).json()
    info = profile["metadata"]["linkedin_info"]
    assert info["url"] == f"https://linkedin.com/in/owner-{unique}"
    assert info["content"]["job_title"] == "product manager"
    assert len(info["content"]["skills"]) == 20
    assert len(info["content"]["experience"]) == 5
    assert len(info["content"]["summary"]) == 1000
    results = [
        doc.to_dict()
        for doc in clients.firestore()
        .collection("augmentation_results")
        .where(filter=FieldFilter("runId", "==", run["runId"]))
        .stream()
    ]
    assert len(results) == 26
    costs = [r["modelCost"] for r in results if "modelCost" in r]
    assert costs == [pytest.approx(GEMINI_FLASH_COST)] * 25


def test_contact_emails_stay_private(stack, unique):
    user, people = augmented_user(stack, unique, 3)
    augment(stack, user)
    wait_run(stack, user)
    other = sign_up(stack)
    archetype_ids = [a["userId"] for a in archetypes_of(user.user_id)]

    stored = json.dumps([archetypes_of(user.user_id), matches_of(user.user_id)], default=str)
    model_input = json.dumps(stack.llm.calls("gemini"))
    public = [requests.get(stack.url(f"/users/{aid}/public"), timeout=10) for aid in archetype_ids]
    private = [
        requests.get(stack.url(f"/users/{aid}"), headers=other.headers, timeout=10)
        for aid in archetype_ids
    ]

    for person in people:
        assert person["email"] not in stored
        assert person["email"] not in model_input
        assert all(person["email"] not in answer.text for answer in public)
    assert {answer.status_code for answer in public} == {404}
    assert {answer.status_code for answer in private} == {403}
    assert "example.com" not in json.dumps(
        requests.get(stack.url(f"/users/{user.user_id}/public"), timeout=10).json()
    )


def test_second_augment_reuses_archetypes(stack, unique):
    user, _ = augmented_user(stack, unique, 5)
    augment(stack, user)
    wait_run(stack, user)
    model_calls = len(stack.llm.calls("gemini"))

    again = augment(stack, user)
    run = wait_run(stack, user)

    assert again["metadata"]["augmentation"]["status"] == "queued"
    assert (run["status"], run["done"], run["failed"]) == ("completed", 6, 0)
    assert len(archetypes_of(user.user_id)) == 5
    assert len(matches_of(user.user_id)) == 5
    assert len(stack.llm.calls("gemini")) == model_calls


def test_retried_tasks_and_flaky_upstream_create_no_duplicates(stack, unique):
    user, people = augmented_user(stack, unique, 25)
    stack.pdl.flaky.update(person["email"] for person in people[:5])
    stack.pdl.broken.add(people[5]["email"])

    run_id = augment(stack, user)["metadata"]["augmentation"]["runId"]
    during = redeliver(stack, task_payloads(user.user_id, run_id, people))
    run = wait_run(stack, user)
    after = redeliver(stack, task_payloads(user.user_id, run_id, people))

    final = requests.get(
        stack.url(f"/users/{user.user_id}"), headers=user.headers, timeout=10
    ).json()["metadata"]["augmentation"]
    assert during <= {200, 503}  # a flaky lookup asks for a retry
    assert after == {200}
    assert (run["status"], run["done"], run["failed"]) == ("completed_with_errors", 25, 1)
    assert final == run
    assert len(archetypes_of(user.user_id)) == 24
    assert len(matches_of(user.user_id)) == 24
    assert all(stack.pdl.lookups(person["email"]) >= 2 for person in people[:5])
    assert stack.pdl.lookups(people[5]["email"]) >= 3


def test_out_of_credits_stops_the_run(stack, unique):
    user, _ = augmented_user(stack, unique, 10)
    stack.pdl.credits = 3

    augment(stack, user)
    run = wait_run(stack, user)

    assert run["status"] == "stopped"
    assert "credits" in run["error"]
    assert run["done"] + run["failed"] == 11
    assert run["done"] <= 3
    assert len(archetypes_of(user.user_id)) == run["done"] - (run["enrichment"] == "matched")


def test_only_the_user_or_an_admin_may_augment(stack, unique):
    user, _ = augmented_user(stack, unique, 1)
    other = sign_up(stack)
    admin = mint_token(f"admin-{unique}@example.com", admin=True).id_token

    anonymous = requests.post(stack.url(f"/users/{user.user_id}/augment"), timeout=10)
    stranger = requests.post(
        stack.url(f"/users/{user.user_id}/augment"), headers=other.headers, timeout=10
    )
    missing = requests.post(
        stack.url(f"/users/nobody-{unique}/augment"),
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    by_admin = requests.post(
        stack.url(f"/users/{user.user_id}/augment"),
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    running = requests.post(
        stack.url(f"/users/{user.user_id}/augment"), headers=user.headers, timeout=10
    )

    assert (anonymous.status_code, stranger.status_code, missing.status_code) == (401, 403, 404)
    assert by_admin.status_code == 200
    assert running.status_code in (200, 409)
    assert archetypes_of(other.user_id) == []


def test_augmentation_is_written_by_the_system_only(stack, unique):
    user, _ = augmented_user(stack, unique, 1)
    augment(stack, user)
    run = wait_run(stack, user)

    forged = requests.put(
        stack.url(f"/users/{user.user_id}"),
        json={"metadata": {"augmentation": {**run, "done": 99, "status": "queued"}}},
        headers=user.headers,
        timeout=10,
    )
    created = requests.post(
        stack.url("/users"),
        json={"metadata": {"augmentation": run}},
        headers=sign_up(stack).headers,
        timeout=10,
    )

    assert forged.status_code == 200
    assert forged.json()["metadata"]["augmentation"] == run
    assert created.status_code == 422


def test_close_loop_settles_an_archetype_match(stack, unique):
    user, _ = augmented_user(stack, unique, 1)
    augment(stack, user)
    wait_run(stack, user)
    (archetype,) = archetypes_of(user.user_id)

    closed = requests.post(
        stack.url("/users/close-loop"),
        params={"sourceId": user.user_id, "targetId": archetype["userId"]},
        json={"outcome": "accepted"},
        headers=user.headers,
        timeout=10,
    )

    assert closed.status_code == 200, closed.text
    assert closed.json()["eloChange"] == {user.user_id: 16, archetype["userId"]: -16}
    assert closed.json()["status"] == "closed"
    stored = clients.firestore().collection("users").document(user.user_id).get().to_dict()
    assert stored["elo"] == 1616


def test_without_a_provider_lookups_are_recorded_not_configured(stack, unique, monkeypatch):
    monkeypatch.delenv("PDL_API_KEY")
    clients.reset()
    try:
        user, _ = augmented_user(stack, unique, 2)
        augment(stack, user)
        run = wait_run(stack, user)
    finally:
        monkeypatch.undo()
        clients.reset()

    assert (run["status"], run["done"], run["enrichment"]) == ("completed", 3, "not_configured")
    archetypes = archetypes_of(user.user_id)
    assert len(archetypes) == 2
    assert [a["metadata"]["linkedin_info"] for a in archetypes] == [None, None]
    assert stack.pdl.requests == []


def test_model_answers_off_the_schema_count_as_failed_after_retries(stack, unique):
    user, _ = augmented_user(stack, unique, 2)
    stack.llm.reply = json.dumps({**ARCHETYPE, "probability": 1.5})

    augment(stack, user)
    run = wait_run(stack, user)

    assert (run["status"], run["done"], run["failed"]) == ("completed_with_errors", 1, 2)
    assert archetypes_of(user.user_id) == []
    assert matches_of(user.user_id) == []
    assert len(stack.llm.calls("gemini")) == 2 * 3  # ARCHETYPE_TASK_ATTEMPTS in the tests
