"""Test-wide fixtures: markers by folder, and the emulator stack for tests that need it.

The stack (Firestore, Auth, Cloud Storage and Cloud Tasks emulators, plus the
local gateway in a thread) starts once per session on free ports, only when a
test asks for it, and stops when the session ends.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from shared.platform import coldstart
from tests.fakes.face_models import write_models
from tests.fakes.llm import API_KEY as LLM_API_KEY
from tests.fakes.llm import FakeLlm
from tests.fakes.pdl import API_KEY as PDL_API_KEY
from tests.fakes.pdl import FakePdl
from tests.fakes.server import serving
from tests.fakes.twilio import FakeTwilio

TESTS = Path(__file__).parent
TEST_PROJECT = "demo-series-test"
PROBE_QUEUE = "platform-probe"
UI_ORIGIN = "http://localhost:3000"  # a configured CORS origin (the gofannon UI's dev server)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).relative_to(TESTS).parts[0]
        if folder in ("unit", "integration", "rules", "packaging", "load", "bench"):
            item.add_marker(getattr(pytest.mark, folder))
    # Collection imported the functions, which hold garbage collection until
    # their first call; a test session is no cold start, so it collects.
    coldstart.release()


TEST_NUMBER = "+12015550100"
TEST_NUMBER_CODE = "424242"


@dataclass
class LiveStack:
    """The running emulators, gateway and outside-service fakes."""

    gateway_url: str
    env: dict[str, str]
    twilio: FakeTwilio
    llm: FakeLlm
    pdl: FakePdl

    def url(self, path: str) -> str:
        return self.gateway_url + path


@pytest.fixture(scope="session")
def live_stack() -> Iterator[LiveStack]:
    from werkzeug.serving import make_server

    from devstack.emulators import free_port, running_stack
    from shared.platform.config import DEFAULT_QUEUE_WORKERS

    queues = {**DEFAULT_QUEUE_WORKERS, PROBE_QUEUE: "probe_worker"}
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    saved = dict(os.environ)
    twilio = FakeTwilio()
    llm = FakeLlm()
    pdl = FakePdl()
    deepface_home = Path(tempfile.mkdtemp(prefix="deepface-"))
    write_models(deepface_home)
    with (
        running_stack(
            TEST_PROJECT, fixed_ports=False, queues=queues, gateway_url=gateway_url
        ) as stack,
        serving(twilio.app()) as twilio_url,
        serving(llm.app()) as llm_url,
        serving(pdl.app()) as pdl_url,
    ):
        env = {
            **stack.env(gateway_url),
            "APP_ENV": "test",
            # Not the local default: a function deployed without the secret signs with
            # the default, and the workers refuse its tasks.
            "TASK_SIGNING_SECRET": f"test-{uuid.uuid4().hex}",
            "TASK_QUEUES": json.dumps(queues),
            "TRUSTED_PROXY_HOPS": "1",
            "SMS_PROVIDER": "twilio",
            "TWILIO_API_BASE": twilio_url,
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM_NUMBER": twilio.from_number,
            "TEST_PHONE_NUMBERS": json.dumps({TEST_NUMBER: TEST_NUMBER_CODE}),
            "GEMINI_API_KEY": LLM_API_KEY,
            "GEMINI_BASE_URL": llm_url,
            "VERTEXAI_ENABLED": "true",
            "VERTEXAI_BASE_URL": llm_url,
            "OPENAI_API_KEY": LLM_API_KEY,
            "OPENAI_BASE_URL": f"{llm_url}/v1",
            "ANTHROPIC_API_KEY": LLM_API_KEY,
            "ANTHROPIC_BASE_URL": llm_url,
            "LLM_RETRY_BACKOFF_SECONDS": "0.05",
            "OLLAMA_BASE_URL": f"{llm_url}/v1",
            "PLAN_CAPS": json.dumps({"free": 1.0, "pro": 50.0}),
            "CORS_ORIGINS": json.dumps([UI_ORIGIN]),
            "DEEPFACE_HOME": str(deepface_home),
            # Off by default; the suite computes gender and race (tests turn it off where needed).
            "SPECIAL_CATEGORY_INFERENCE": "true",
            "PDL_API_KEY": PDL_API_KEY,
            "PDL_BASE_URL": pdl_url,
            # The Tasks emulator delivers a failing task 4 times: give up on the third.
            "ARCHETYPE_TASK_ATTEMPTS": "3",
        }
        os.environ.update(env)
        from shared.platform import clients

        clients.reset()
        from devstack.gateway import create_app
        from tests.fakes.probe_worker import probe_worker

        server = make_server(
            "127.0.0.1",
            gateway_port,
            create_app(extra_functions={"probe_worker": probe_worker}),
            threaded=True,
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield LiveStack(gateway_url=gateway_url, env=env, twilio=twilio, llm=llm, pdl=pdl)
        finally:
            server.shutdown()
            os.environ.clear()
            os.environ.update(saved)
            clients.reset()
            shutil.rmtree(deepface_home, ignore_errors=True)


def reset_firestore(url: str) -> None:
    """Empty the Firestore emulator; it answers 409 while a transaction still holds locks."""
    deadline = time.monotonic() + 60
    while (response := requests.delete(url, timeout=10)).status_code == 409:
        assert time.monotonic() < deadline, "Firestore emulator stayed locked"
        time.sleep(0.5)
    response.raise_for_status()


@pytest.fixture
def stack(live_stack: LiveStack) -> LiveStack:
    """The stack with Firestore and Auth emptied before the test."""
    env = live_stack.env
    project = env["GOOGLE_CLOUD_PROJECT"]
    firestore = env["FIRESTORE_EMULATOR_HOST"]
    auth = env["FIREBASE_AUTH_EMULATOR_HOST"]
    reset_firestore(
        f"http://{firestore}/emulator/v1/projects/{project}/databases/(default)/documents"
    )
    requests.delete(
        f"http://{auth}/emulator/v1/projects/{project}/accounts", timeout=10
    ).raise_for_status()
    live_stack.twilio.failing = False
    live_stack.llm.reset()
    live_stack.pdl.reset()
    return live_stack


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex
