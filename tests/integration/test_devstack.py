"""The local stack's own tools, against the test emulators."""

from __future__ import annotations

import requests

from devstack.emulators import PROFILES_BUCKET, wipe_data
from devstack.seed import seed_demo_user
from shared.platform import clients
from tests.integration.helpers import sign_up


def emulator_ports(stack) -> dict[str, int]:
    env = stack.env
    return {
        "firestore": int(env["FIRESTORE_EMULATOR_HOST"].rsplit(":", 1)[1]),
        "auth": int(env["FIREBASE_AUTH_EMULATOR_HOST"].rsplit(":", 1)[1]),
        "storage": int(env["STORAGE_EMULATOR_HOST"].rsplit(":", 1)[1]),
    }


def test_reset_wipes_documents_accounts_and_objects_then_seeds_the_demo_user(stack):
    alice = sign_up(stack)
    bucket = clients.storage().bucket(PROFILES_BUCKET)
    for index in range(3):
        bucket.blob(f"profiles/{alice.user_id}/{index}.txt").upload_from_string(b"x")
    project = stack.env["GOOGLE_CLOUD_PROJECT"]

    wipe_data(project, emulator_ports(stack))
    demo_uid = seed_demo_user("demo@example.com")

    users = [doc.id for doc in clients.firestore().collection("users").stream()]
    assert users == [demo_uid]
    assert not list(clients.firestore().collection("auth_tokens").stream())
    assert not list(bucket.list_blobs())
    accounts = requests.post(
        f"http://{stack.env['FIREBASE_AUTH_EMULATOR_HOST']}/identitytoolkit.googleapis.com/v1"
        f"/projects/{project}/accounts:query",
        json={},
        headers={"Authorization": "Bearer owner"},
        timeout=10,
    ).json()
    assert [user["localId"] for user in accounts["userInfo"]] == [demo_uid]
    again = requests.get(stack.url("/auth/validate"), headers=alice.headers, timeout=10)
    assert again.status_code == 401
