"""Archetype privacy, special-category face attributes and retention, through the gateway.

Archetypes come from a real augmentation run (the Tasks emulator, fake PDL, fake
model); face analysis runs DeepFace on the stand-in models through the
`image-analysis` queue; retention checks the `expireAt` fields the real routes
write and the TTL policies `firestore.indexes.json` declares for them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.agents import cancels
from shared.platform import clients
from shared.platform.config import get_settings
from tests.integration.helpers import SignedUp, random_number, sign_up
from tests.integration.test_augment import archetypes_of, augment, augmented_user, wait_run
from tests.integration.test_imessage import SECRET, fake, legacy, loop  # noqa: F401 - fixtures
from tests.integration.test_photos import astronaut, upload, wait_picture_data
from tests.integration.test_users import admin_headers, close_loop

ROOT = Path(__file__).resolve().parents[2]
TTL_FIELD = "expireAt"


@pytest.fixture
def creator_and_archetype(stack, unique) -> tuple[SignedUp, dict[str, Any], list[dict]]:
    user, people = augmented_user(stack, unique, 1)
    augment(stack, user)
    assert wait_run(stack, user)["status"] == "completed"
    (archetype,) = archetypes_of(user.user_id)
    return user, archetype, people


def get(stack, path: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(stack.url(path), headers=headers or {}, timeout=10)


# Archetypes: private to their creator.


def test_an_archetype_is_never_public(stack, creator_and_archetype):
    user, archetype, _ = creator_and_archetype
    other = sign_up(stack)
    path = f"/users/{archetype['userId']}/public"

    answers = [
        get(stack, path),
        get(stack, path, other.headers),
        get(stack, path, user.headers),
        get(stack, path, admin_headers("public-check")),
    ]

    assert [answer.status_code for answer in answers] == [404] * 4
    assert {answer.json()["detail"] for answer in answers} == {"User not found"}
    assert get(stack, f"/users/{user.user_id}/public").status_code == 200


def test_only_the_creator_and_admins_read_an_archetype(stack, unique, creator_and_archetype):
    user, archetype, _ = creator_and_archetype
    other = sign_up(stack)
    path = f"/users/{archetype['userId']}"

    by_creator = get(stack, path, user.headers)
    by_other = get(stack, path, other.headers)
    absent = get(stack, f"/users/archetype-{unique}", other.headers)
    by_admin = get(stack, path, admin_headers(unique))
    edited = requests.put(
        stack.url(path), json={"bio": "mine now"}, headers=user.headers, timeout=10
    )

    assert by_creator.status_code == 200, by_creator.text
    assert by_creator.json()["userId"] == archetype["userId"]
    assert by_creator.json()["metadata"]["archetype"] is True
    assert by_creator.json()["metadata"]["referredBy"] == user.user_id
    assert by_admin.status_code == 200
    # Another user gets the answer any profile not theirs gets, existing or not.
    assert (by_other.status_code, absent.status_code) == (403, 403)
    assert by_other.json() == absent.json()
    assert edited.status_code == 403


def test_an_archetype_holds_no_contact_data(stack, unique, creator_and_archetype):
    user, archetype, people = creator_and_archetype
    other = sign_up(stack)
    contact_email = people[0]["email"]
    stored = clients.firestore().collection("users").document(archetype["userId"]).get()

    lookups = [
        get(stack, f"/users/check-email?email={contact_email}", who)
        for who in (user.headers, other.headers, admin_headers(unique))
    ]
    give_email = requests.put(
        stack.url(f"/users/{archetype['userId']}"),
        json={"email": contact_email},
        headers=admin_headers(unique),
        timeout=10,
    )
    give_phone = requests.put(
        stack.url(f"/users/{archetype['userId']}"),
        json={"phone": random_number()},
        headers=admin_headers(unique),
        timeout=10,
    )
    created_with_phone = requests.post(
        stack.url("/users"),
        json={"phone": random_number(), "metadata": {"archetype": True}},
        headers=admin_headers(unique),
        timeout=10,
    )

    record = stored.to_dict()
    assert (record["phone"], record["email"]) == (None, None)
    assert contact_email not in json.dumps(record, default=str)
    assert [answer.json()["exists"] for answer in lookups] == [False] * 3
    for refused in (give_email, give_phone, created_with_phone):
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["msg"] == "An archetype holds no phone or email"
    assert clients.firestore().collection("user_emails").document(contact_email).get().exists is (
        False
    )


def test_close_loop_on_an_archetype_match_is_for_its_creator_only(
    stack, unique, creator_and_archetype
):
    user, archetype, _ = creator_and_archetype
    other = sign_up(stack)
    admin = SignedUp(user_id="", phone=None, token=admin_headers(unique)["Authorization"][7:])

    by_admin = close_loop(stack, admin, user.user_id, archetype["userId"])
    by_other = close_loop(stack, other, user.user_id, archetype["userId"])
    other_pair = close_loop(stack, other, other.user_id, archetype["userId"])
    by_creator = close_loop(stack, user, user.user_id, archetype["userId"])
    admin_again = close_loop(stack, admin, user.user_id, archetype["userId"])

    assert by_admin.status_code == 404, by_admin.text
    assert by_other.status_code == 403
    assert other_pair.status_code == 404
    assert by_creator.status_code == 200, by_creator.text
    assert admin_again.status_code == 404  # a closed archetype match stays private too


# Special-category attributes: only where enabled, never public, gone with their photo.


@pytest.fixture
def inference_off(monkeypatch, tmp_path) -> Iterator[None]:
    """A deployment that did not enable special-category inference, without any model file."""
    monkeypatch.setenv("SPECIAL_CATEGORY_INFERENCE", "false")
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        yield
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_attributes_are_not_computed_when_inference_is_off(stack, inference_off):
    alice = sign_up(stack)

    uploaded = upload(stack, alice, astronaut())
    picture = wait_picture_data(alice.user_id)
    inline = requests.post(
        stack.url("/users/analyze-face"),
        params={"user_id": alice.user_id, "image_url": uploaded.json()["image_url"]},
        headers=alice.headers,
        timeout=60,
    )

    assert picture["face_detected"] is True
    assert set(picture["region"]) == {"x", "y", "w", "h"}
    # With no model file anywhere, the models were not even looked for.
    assert (picture["gender"], picture["race"]) == (None, None)
    assert (picture["missing_attributes"], picture["error"]) == (None, None)
    assert inline.status_code == 200, inline.text
    assert inline.json()["picture_data"]["gender"] is None
    assert inline.json()["picture_data"]["race"] is None


def test_attributes_are_computed_when_on_and_never_public(stack):
    alice = sign_up(stack)

    upload(stack, alice, astronaut())
    picture = wait_picture_data(alice.user_id)
    public = get(stack, f"/users/{alice.user_id}/public")
    own = get(stack, f"/users/{alice.user_id}", alice.headers)

    assert picture["gender"]["label"] in ("Man", "Woman")
    assert picture["race"]["label"]
    assert public.status_code == 200
    assert not {"gender", "race", "Man", "Woman", picture["race"]["label"]} & set(
        json.dumps(public.json()).replace('"', " ").split()
    )
    assert set(public.json()) == {
        "userId",
        "name",
        "bio",
        "age",
        "location",
        "profilePic",
        "color",
    }
    assert own.json()["metadata"]["picture_data"]["gender"] == picture["gender"]


def analysis_of(user_id: str) -> tuple[Any, Any]:
    record = clients.firestore().collection("users").document(user_id).get().to_dict() or {}
    return record["metadata"].get("picture_data"), record.get("pictureAnalysis")


def wait_analysis_of(user_id: str, image_url: str, timeout: float = 60.0) -> dict:
    blob = image_url.rsplit("/", 1)[-1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        picture, analysis = analysis_of(user_id)
        if picture and analysis and blob in analysis["object"]:
            return picture
        time.sleep(0.2)
    raise AssertionError(f"no analysis of {image_url}")


def test_the_analysis_goes_with_the_picture(stack):
    alice = sign_up(stack)
    first = upload(stack, alice, astronaut()).json()["image_url"]
    wait_analysis_of(alice.user_id, first)
    second = upload(stack, alice, astronaut()).json()["image_url"]
    wait_analysis_of(alice.user_id, second)

    back = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"profilePic": first},
        headers=alice.headers,
        timeout=10,
    )
    assert back.status_code == 200, back.text
    assert back.json()["metadata"]["picture_data"] is None
    assert analysis_of(alice.user_id) == (None, None)
    # The first picture's analysis task already ran (one per object generation): recompute it.
    again = requests.post(
        stack.url("/users/analyze-face"),
        params={"user_id": alice.user_id, "image_url": first},
        headers=alice.headers,
        timeout=60,
    )
    assert again.status_code == 200, again.text
    assert wait_analysis_of(alice.user_id, first)["gender"] is not None

    removed = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"profilePic": None},
        headers=alice.headers,
        timeout=10,
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["metadata"]["picture_data"] is None
    assert analysis_of(alice.user_id) == (None, None)


def test_the_same_picture_keeps_its_analysis(stack):
    alice = sign_up(stack)
    image_url = upload(stack, alice, astronaut()).json()["image_url"]
    picture = wait_analysis_of(alice.user_id, image_url)

    kept = requests.put(
        stack.url(f"/users/{alice.user_id}"),
        json={"profilePic": image_url, "bio": "still me"},
        headers=alice.headers,
        timeout=10,
    )

    assert kept.status_code == 200, kept.text
    assert kept.json()["metadata"]["picture_data"]["gender"] == picture["gender"]


# Retention: expireAt on every short-lived record, and a TTL policy for each.


def ttl_policies() -> dict[str, str]:
    spec = json.loads((ROOT / "firestore.indexes.json").read_text())
    return {
        field["collectionGroup"]: field["fieldPath"]
        for field in spec.get("fieldOverrides", [])
        if field.get("ttl") is True
    }


def walk(collections: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every document of every collection and sub-collection, with its collection id."""
    for collection in collections:
        for reference in collection.list_documents():
            snapshot = reference.get()
            if snapshot.exists:
                yield collection.id, snapshot.to_dict()
            yield from walk(reference.collections())


def close_to(value: datetime, expected: datetime) -> bool:
    return abs(value - expected) < timedelta(seconds=5)


def test_short_lived_records_expire_and_every_one_has_a_ttl_policy(stack, fake):  # noqa: F811
    phone = random_number()
    sent = requests.post(stack.url("/auth/send-code"), json={"phone": phone}, timeout=10)
    verified = requests.post(
        stack.url("/auth/verify-code"),
        json={"phone": phone, "code": stack.twilio.last_code(phone)},
        timeout=10,
    )
    webhook = requests.post(
        stack.url("/agent/webhook"),
        json=legacy(random_number()),
        headers={"Authorization": SECRET},
        timeout=10,
    )
    assert (sent.status_code, verified.status_code, webhook.status_code) == (200, 200, 200)

    db = clients.firestore()
    code = db.collection("phone_codes").document(phone).get().to_dict()
    (session,) = [doc.to_dict() for doc in db.collection("auth_tokens").stream()]
    (counter,) = [doc.to_dict() for doc in db.collection("rate_limits").stream()]
    (event,) = [doc.to_dict() for doc in db.collection("webhook_events").stream()]

    # A code document outlives its 10-minute code for the hourly send window, no longer.
    assert code[TTL_FIELD] == code["windowStart"] + timedelta(hours=1)
    assert code[TTL_FIELD] > code["expiresAt"]
    assert session[TTL_FIELD] == session["expiresAt"]
    assert close_to(counter[TTL_FIELD], counter["windowStart"] + timedelta(hours=1))
    assert event[TTL_FIELD] == event["receivedAt"] + timedelta(days=3)
    assert close_to(event[TTL_FIELD], datetime.now(UTC) + timedelta(days=3))
    # A streamed run's cancel flag outlives the run's longest possible life, no longer.
    cancels.register("probe-run", "probe-user", 90)
    flag = db.collection(cancels.RUN_CANCELS).document("probe-run").get().to_dict()
    assert close_to(flag[TTL_FIELD], datetime.now(UTC) + timedelta(seconds=90))

    expiring = {name for name, data in walk(db.collections()) if TTL_FIELD in data}
    policies = ttl_policies()
    assert expiring == {
        "phone_codes",
        "auth_tokens",
        "rate_limits",
        "webhook_events",
        "run_cancels",
    }
    # Every collection that writes expireAt has its TTL policy, and every policy is used.
    assert policies == dict.fromkeys(expiring, TTL_FIELD)


def validate_indexes(spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Check an indexes file with the Firebase CLI's own validator (what a deploy runs)."""
    script = (
        "const {FirestoreApi} = require('firebase-tools/lib/firestore/api');"
        "const api = new FirestoreApi();"
        "api.validateSpec(api.upgradeOldSpec(JSON.parse(process.argv[1])));"
    )
    return subprocess.run(
        [shutil.which("node") or "node", "-e", script, json.dumps(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_indexes_file_passes_the_firebase_cli_validator():
    spec = json.loads((ROOT / "firestore.indexes.json").read_text())
    broken = {
        **spec,
        "fieldOverrides": [{**field, "ttl": "true"} for field in spec["fieldOverrides"]],
    }

    assert validate_indexes(spec).returncode == 0, validate_indexes(spec).stderr
    assert validate_indexes(broken).returncode != 0
    # No single-field index on the TTL fields: nothing queries them.
    assert all(field["indexes"] == [] for field in spec["fieldOverrides"] if field.get("ttl"))


def test_the_deploy_applies_the_indexes_file():
    firebase = json.loads((ROOT / "firebase.json").read_text())
    cloudbuild = (ROOT / "cloudbuild.yaml").read_text()

    assert firebase["firestore"]["indexes"] == "firestore.indexes.json"
    assert "--only=hosting,firestore,storage" in cloudbuild
