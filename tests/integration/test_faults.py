"""Faults: Firestore or Cloud Storage stopped mid-request, a worker killed mid-task.

Each request test runs the function in its own process against its own
Firestore emulator and fake-gcs-server (not the session stack's), then
really stops them: SIGSTOP (the server holds connections and never
answers: the deadline must end the call) or SIGKILL (connections refused).
The answer is 503 with `Retry-After` and a JSON `detail`, within a bound,
with no traceback; after the server is back, the data is written entirely
or not at all, and the same request answers normally.

The worker test kills a chat worker process while it waits for the model,
and the Cloud Tasks emulator delivers the task again to a fresh process:
one result, one charge.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from deploy.manifest import ROOT
from devstack.emulators import PROFILES_BUCKET, firestore_command, free_port, storage_command
from devstack.tokens import mint_token
from tests.fakes.server import function_process, serving
from tests.integration.test_deploy_env import deploy_env
from tests.integration.test_photos import jpeg

DEADLINE = 2.0  # FIRESTORE_DEADLINE_SECONDS and STORAGE_DEADLINE_SECONDS of the functions here
# A request fails at its first call that runs out of time; allow the process some slack.
ANSWER_WITHIN = DEADLINE * 2 + 3


@dataclass
class Emulator:
    """One emulator process on a fixed port, which a test may freeze, kill and start again."""

    name: str
    command: list[str]
    port: int
    ready_path: str
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url(self.ready_path), timeout=1).status_code < 500:
                    return
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"{self.name} did not start"
            time.sleep(0.1)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def freeze(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()
            self.kill()
        self.log.unlink(missing_ok=True)


@dataclass
class OwnEmulators:
    firestore: Emulator
    storage: Emulator
    project: str

    def documents(self, collection: str) -> list[dict[str, Any]]:
        """Every document of a top-level collection, read from the emulator directly."""
        url = self.firestore.url(
            f"/v1/projects/{self.project}/databases/(default)/documents/{collection}"
        )
        response = requests.get(url, params={"pageSize": 1000}, timeout=10)
        response.raise_for_status()
        return list(response.json().get("documents", []))

    def objects(self) -> list[str]:
        response = requests.get(self.storage.url(f"/storage/v1/b/{PROFILES_BUCKET}/o"), timeout=10)
        response.raise_for_status()
        return [item["name"] for item in response.json().get("items", [])]

    def create_bucket(self) -> None:
        requests.post(
            self.storage.url(f"/storage/v1/b?project={self.project}"),
            json={"name": PROFILES_BUCKET},
            timeout=10,
        ).raise_for_status()


@pytest.fixture(scope="module")
def own(live_stack) -> Iterator[OwnEmulators]:
    firestore_port, storage_port = free_port(), free_port()
    firestore = Emulator("firestore", firestore_command(firestore_port), firestore_port, "/")
    storage = Emulator("storage", storage_command(storage_port), storage_port, "/storage/v1/b")
    emulators = OwnEmulators(firestore, storage, live_stack.env["GOOGLE_CLOUD_PROJECT"])
    try:
        firestore.start()
        storage.start()
        emulators.create_bucket()
        yield emulators
    finally:
        firestore.stop()
        storage.stop()


@contextlib.contextmanager
def function(stack, own: OwnEmulators, name: str) -> Iterator[str]:
    """Run a function group in its own process, against our own Firestore and Storage."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        **deploy_env(stack, name),
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{own.firestore.port}",
        "STORAGE_EMULATOR_HOST": own.storage.url(),
        "FIRESTORE_DEADLINE_SECONDS": str(DEADLINE),
        "STORAGE_DEADLINE_SECONDS": str(DEADLINE),
        "UNAVAILABLE_RETRY_AFTER_SECONDS": "7",
    }
    with function_process(
        [
            sys.executable,
            "-m",
            "functions_framework",
            f"--target={name}",
            f"--source={ROOT / 'functions' / name / 'main.py'}",
        ],
        env,
        timeout=30,
    ) as url:
        yield url


DOCUMENT = json.loads((ROOT / "shared" / "openapi.json").read_text())


def assert_unavailable(response: requests.Response, elapsed: float, route: str) -> None:
    """A documented 503 with `Retry-After`, in time; `route` is the OpenAPI path."""
    assert response.status_code == 503, response.text
    operation = DOCUMENT["paths"][route][str(response.request.method).lower()]
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {"detail": "Service temporarily unavailable; retry later"}
    assert "Traceback" not in response.text
    assert elapsed < ANSWER_WITHIN, elapsed


def timed(method: str, url: str, **options: Any) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.request(method, url, timeout=60, **options)
    return response, time.monotonic() - started


def recovered(method: str, url: str, **options: Any) -> requests.Response:
    """The first answer that is not 503, once the restarted server is reached again.

    The client reconnects with backoff after an outage: until then it answers 503.
    """
    deadline = time.monotonic() + 60
    while (response := requests.request(method, url, timeout=60, **options)).status_code == 503:
        assert time.monotonic() < deadline, "still unavailable a minute after the restart"
        time.sleep(0.5)
    return response


def web_user() -> tuple[str, dict[str, str]]:
    user = mint_token(f"faults-{uuid.uuid4().hex[:10]}@example.com")
    return user.uid, {"Authorization": f"Bearer {user.id_token}"}


def test_a_frozen_then_killed_firestore_answers_503_on_a_read(stack, own):
    with function(stack, own, "users") as users:
        uid, headers = web_user()
        created = requests.post(
            f"{users}/users", json={"name": {"first": "Fay"}}, headers=headers, timeout=30
        )
        assert created.status_code == 201, created.text

        own.firestore.freeze()
        try:
            response, elapsed = timed("GET", f"{users}/users/{uid}", headers=headers)
        finally:
            own.firestore.thaw()
        assert_unavailable(response, elapsed, "/users/{user_id}")
        again = requests.get(f"{users}/users/{uid}", headers=headers, timeout=30)
        assert again.status_code == 200, again.text

        own.firestore.kill()
        try:
            response, elapsed = timed("GET", f"{users}/users/{uid}", headers=headers)
        finally:
            own.firestore.start()  # in memory: it comes back empty
        assert_unavailable(response, elapsed, "/users/{user_id}")
        gone = recovered("GET", f"{users}/users/{uid}", headers=headers)
        assert gone.status_code == 404, gone.text


def test_a_firestore_frozen_mid_sign_up_writes_all_or_nothing(stack, own):
    statuses = []
    with function(stack, own, "users") as users:
        warm = requests.post(
            f"{users}/users", json={"name": {"first": "Warm"}}, headers=web_user()[1], timeout=30
        )
        assert warm.status_code == 201, warm.text
        # From before the first read to after the commit (a warm sign-up takes about 0.1 s).
        for pause in (0.0, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.5):
            uid, headers = web_user()
            answer: dict[str, Any] = {}

            def sign_up(headers: dict[str, str] = headers, answer: dict[str, Any] = answer) -> None:
                answer["response"], answer["elapsed"] = timed(
                    "POST", f"{users}/users", json={"name": {"first": "Fay"}}, headers=headers
                )

            caller = threading.Thread(target=sign_up)
            caller.start()
            time.sleep(pause)
            own.firestore.freeze()
            try:
                caller.join(timeout=60)
            finally:
                own.firestore.thaw()
            response = answer["response"]
            statuses.append(response.status_code)
            assert response.status_code in (201, 503), response.text
            if response.status_code == 503:
                assert_unavailable(response, answer["elapsed"], "/users")

            profiles = [doc for doc in own.documents("users") if doc["name"].endswith(f"/{uid}")]
            emails = [
                doc
                for doc in own.documents("user_emails")
                if doc.get("fields", {}).get("userId", {}).get("stringValue") == uid
            ]
            assert len(profiles) == len(emails) <= 1, (pause, profiles, emails)
            if response.status_code == 201:
                assert profiles
            retried = requests.post(
                f"{users}/users", json={"name": {"first": "Fay"}}, headers=headers, timeout=30
            )
            assert retried.status_code == (409 if profiles else 201), retried.text
    assert 503 in statuses, statuses


def test_a_stopped_storage_answers_503_on_an_upload_and_a_read(stack, own):
    with function(stack, own, "storage") as storage, function(stack, own, "users") as users:
        uid, headers = web_user()
        created = requests.post(
            f"{users}/users", json={"name": {"first": "Fay"}}, headers=headers, timeout=30
        )
        assert created.status_code == 201, created.text
        before = own.objects()

        def upload() -> tuple[requests.Response, float]:
            return timed(
                "POST",
                f"{storage}/storage/upload-photo",
                files={"file": ("p.jpg", io.BytesIO(jpeg()), "image/jpeg")},
                headers=headers,
            )

        own.storage.freeze()
        try:
            response, elapsed = upload()
        finally:
            own.storage.thaw()
        assert_unavailable(response, elapsed, "/storage/upload-photo")
        # fake-gcs-server finishes the write it held, or never received it: never a torn object.
        for name in set(own.objects()) - set(before):
            data = requests.get(
                own.storage.url(
                    f"/storage/v1/b/{PROFILES_BUCKET}/o/{urllib.parse.quote(name, safe='')}"
                ),
                params={"alt": "media"},
                timeout=10,
            )
            assert data.content[:2] == b"\xff\xd8", name

        own.storage.kill()
        try:
            response, elapsed = upload()
        finally:
            own.storage.start()
            own.create_bucket()
        assert_unavailable(response, elapsed, "/storage/upload-photo")
        uploaded = recovered(
            "POST",
            f"{storage}/storage/upload-photo",
            data={"user_id": uid},
            files={"file": ("p.jpg", io.BytesIO(jpeg()), "image/jpeg")},
            headers=headers,
        )
        assert uploaded.status_code == 200, uploaded.text

        # A read: the public profile image, served from Cloud Storage.
        image = storage + urllib.parse.urlsplit(uploaded.json()["image_url"]).path
        assert requests.get(image, timeout=30).status_code == 200
        own.storage.freeze()
        try:
            response, elapsed = timed("GET", image)
        finally:
            own.storage.thaw()
        assert_unavailable(response, elapsed, "/storage/profile-image/{bucket_name}/{blob_name}")
        assert requests.get(image, timeout=30).status_code == 200


@dataclass
class TaskProxy:
    """Stands between the Cloud Tasks emulator and the worker processes.

    It forwards each delivery to the current worker, answers 502 when that
    worker dies mid-request, and holds a retry for `backoff` seconds first:
    the emulator retries at once, where Cloud Tasks backs off (a ticket's
    lease must expire before another worker may take it).
    """

    target: str = ""
    backoff: float = 0.0
    retries: list[int] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        from werkzeug.wrappers import Request, Response

        request = Request(environ)
        retry = int(request.headers.get("X-CloudTasks-TaskRetryCount", "0"))
        self.retries.append(retry)
        if retry:
            time.sleep(self.backoff)
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in ("host", "content-length")
        }
        try:
            upstream = requests.post(
                self.target + request.path, data=request.get_data(), headers=headers, timeout=60
            )
        except requests.ConnectionError:
            response = Response("worker gone", status=502)
        else:
            response = Response(upstream.content, status=upstream.status_code)
        return response(environ, start_response)


def worker(stack, name: str, extra: dict[str, str]) -> Emulator:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "functions_framework",
        f"--target={name}",
        f"--source={ROOT / 'functions' / name / 'main.py'}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    process = Emulator(name, command, port, "/")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **stack.env, **extra}
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        process.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return process


def kill_inside_model_call(stack, proxy: TaskProxy, first: Emulator, fresh: Emulator) -> None:
    """Once `first` is inside its (held) model call, send retries to `fresh` and kill `first`."""
    deadline = time.monotonic() + 30
    while not stack.llm.calls("gemini"):
        assert time.monotonic() < deadline, "the worker never called the model"
        time.sleep(0.05)
    stack.llm.delay_seconds = 0
    proxy.target = fresh.url()
    first.kill()


def test_a_chat_worker_killed_mid_ticket_is_retried_with_one_charge(stack):
    from tests.integration.test_chat import GEMINI_FLASH_COST, chat_body, ledger

    lease = 3.0
    user = mint_token(f"killed-{uuid.uuid4().hex[:8]}@example.com")
    headers = {"Authorization": f"Bearer {user.id_token}"}
    before = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()
    proxy = TaskProxy(backoff=lease + 1)
    stack.llm.delay_seconds = 60  # holds the first worker inside its model call
    workers = []
    with serving(proxy) as proxy_url:
        try:
            extra = {"CHAT_LEASE_SECONDS": str(lease)}
            workers = [worker(stack, "chat_worker", extra) for _ in range(2)]
            chat = worker(stack, "chat", {"TASKS_TARGET_BASE_URL": proxy_url})
            workers.append(chat)
            first, fresh = workers[0], workers[1]
            proxy.target = first.url()

            created = requests.post(
                f"{chat.url()}/chat", json=chat_body(), headers=headers, timeout=30
            )
            assert created.status_code == 200, created.text
            kill_inside_model_call(stack, proxy, first, fresh)

            ticket_id = created.json()["ticket_id"]
            deadline = time.monotonic() + 60
            while True:
                ticket = requests.get(
                    stack.url(f"/chat/{ticket_id}"), headers=headers, timeout=10
                ).json()
                if ticket["status"] in ("completed", "failed"):
                    break
                assert time.monotonic() < deadline, ticket
                time.sleep(0.2)
        finally:
            for process in workers:
                process.stop()

    after = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()
    assert ticket["status"] == "completed", ticket
    assert proxy.retries[:2] == [0, 1]
    assert len(stack.llm.calls("gemini")) == 2  # the killed call, and the retry's
    assert len(ledger(user.uid)) == 1
    spent = before["usageInfo"]["spendRemaining"] - after["usageInfo"]["spendRemaining"]
    assert spent == pytest.approx(GEMINI_FLASH_COST)
