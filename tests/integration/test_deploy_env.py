"""Each function that enqueues, started with only its own deploy environment, really enqueues.

The function runs in its own functions-framework process whose environment
is what `cloudbuild.yaml` gives it (its `--set-env-vars` names and its
`--set-secrets`), with each value replaced by the local stack's equivalent
and the emulator hosts added. A variable the deploy forgets is then simply
absent: a missing `TASK_SIGNING_SECRET` signs tasks with the local default
(the stack's workers refuse them), a missing `TASKS_TARGET_BASE_URL` sends
them nowhere.
"""

from __future__ import annotations

import contextlib
import os
import sys

import requests

from deploy.manifest import ROOT
from devstack.functions_index import deployed_functions
from tests.fakes.server import function_process
from tests.integration.helpers import SignedUp, phone_token, random_number, sign_up
from tests.integration.test_photos import jpeg, wait_picture_data

_EMULATORS = (
    "FIRESTORE_EMULATOR_HOST",
    "FIREBASE_AUTH_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "CLOUD_TASKS_EMULATOR_HOST",
)


def deploy_env(stack, name: str) -> dict[str, str]:
    spec = deployed_functions()[name]
    env = {key: stack.env[key] for key in _EMULATORS}
    for variable, value in spec.environment.items():
        env[variable] = stack.env.get(variable, value)
    for variable in spec.secrets:
        env[variable] = stack.env.get(variable, f"test-secret-{variable}")
    env["APP_ENV"] = "test"  # production refuses emulator hosts
    return env


def standalone(stack, name: str) -> contextlib.AbstractContextManager[str]:
    return function_process(
        [
            sys.executable,
            "-m",
            "functions_framework",
            f"--target={name}",
            f"--source={ROOT / 'functions' / name / 'main.py'}",
        ],
        {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **deploy_env(stack, name)},
        timeout=30,
    )


def test_users_deploy_env_queues_the_adopted_photos_analysis(stack):
    phone = random_number()
    token = phone_token(stack, phone)["token"]
    headers = {"Authorization": f"Bearer {token}"}
    pending = requests.post(
        stack.url("/storage/upload-photo"),
        files={"file": ("p.jpg", jpeg(), "image/jpeg")},
        headers=headers,
        timeout=30,
    ).json()

    with standalone(stack, "users") as users:
        created = requests.post(
            users + "/users", json={"profilePic": pending["image_url"]}, headers=headers, timeout=30
        )

    assert created.status_code == 201, created.text
    assert wait_picture_data(created.json()["userId"])["error"] == "No face detected"


def test_storage_deploy_env_queues_the_uploads_analysis(stack):
    alice: SignedUp = sign_up(stack)

    with standalone(stack, "storage") as storage:
        uploaded = requests.post(
            storage + "/users/upload-photo",
            files={"file": ("p.jpg", jpeg(), "image/jpeg")},
            headers=alice.headers,
            timeout=30,
        )

    assert uploaded.status_code == 200, uploaded.text
    assert wait_picture_data(alice.user_id)["error"] == "No face detected"


def test_chat_deploy_env_queues_the_ticket(stack):
    from tests.integration.test_chat import chat_body, wait_ticket

    alice = sign_up(stack)

    with standalone(stack, "chat") as chat:
        created = requests.post(chat + "/chat", json=chat_body(), headers=alice.headers, timeout=30)

    assert created.status_code == 200, created.text
    assert wait_ticket(stack, alice.headers, created.json()["ticket_id"])["status"] == "completed"


def test_deletion_worker_deploy_env_queues_the_next_steps(stack):
    """A deletion runs a few steps per task, then the worker queues the rest itself."""
    import json

    from google.cloud import tasks_v2

    from shared.platform import clients
    from shared.platform.tasks import SIGNATURE_HEADER, sign
    from tests.integration.test_privacy import queue_path, wait_deleted

    alice = sign_up(stack)
    tasks = clients.tasks()
    tasks.pause_queue(request=tasks_v2.PauseQueueRequest(name=queue_path()))
    try:
        deleting = requests.delete(stack.url("/users/me"), headers=alice.headers, timeout=30)
        assert deleting.status_code == 202, deleting.text
        body = json.dumps({"userId": alice.user_id}).encode()
        with standalone(stack, "deletion_worker") as worker:
            ran = requests.post(
                worker,
                data=body,
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body)},
                timeout=120,
            )
        assert ran.status_code == 200, ran.text
        queued = tasks.list_tasks(
            request=tasks_v2.ListTasksRequest(parent=queue_path(), response_view="FULL")
        )
        urls = [task.http_request.url for task in queued]
        assert len(urls) == 2, urls  # the request's task, and the one the worker queued
        assert all(url == stack.env["TASKS_TARGET_BASE_URL"] + "/deletion_worker" for url in urls)
    finally:
        tasks.resume_queue(request=tasks_v2.ResumeQueueRequest(name=queue_path()))
    wait_deleted(alice.user_id)
