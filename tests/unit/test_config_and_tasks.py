"""Settings guards and task signatures."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.platform import clients, tasks
from shared.platform.config import LOCAL_LLM_MODEL, get_settings


@pytest.fixture
def environment(monkeypatch):
    def apply(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        clients.reset()

    yield apply
    monkeypatch.undo()
    clients.reset()


def test_production_refuses_emulator_hosts(environment):
    environment(
        APP_ENV="production",
        TASK_SIGNING_SECRET="s3cret-value",
        FIRESTORE_EMULATOR_HOST="127.0.0.1:1",
    )

    with pytest.raises(RuntimeError, match="emulator"):
        get_settings()


def test_production_refuses_the_local_task_secret(environment, monkeypatch):
    for name in (
        "FIRESTORE_EMULATOR_HOST",
        "FIREBASE_AUTH_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "CLOUD_TASKS_EMULATOR_HOST",
        "TASK_SIGNING_SECRET",
        "VERTEXAI_BASE_URL",
        "SIGNING_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    environment(APP_ENV="production")

    with pytest.raises(RuntimeError, match="TASK_SIGNING_SECRET"):
        tasks.sign(b"{}")
    with pytest.raises(RuntimeError, match="PHONE_CODE_SECRET"):
        get_settings().code_secret()


def test_signature_verifies_only_the_signed_body(environment):
    environment(TASK_SIGNING_SECRET="one-secret")
    signature = tasks.sign(b'{"a":1}')

    assert tasks.verify(b'{"a":1}', signature)
    assert not tasks.verify(b'{"a":2}', signature)
    assert not tasks.verify(b'{"a":1}', None)
    environment(TASK_SIGNING_SECRET="another-secret")
    assert not tasks.verify(b'{"a":1}', signature)


def test_worker_url_follows_the_queue_configuration(environment):
    environment(
        TASKS_TARGET_BASE_URL="https://region-proj.cloudfunctions.net/",
        TASK_QUEUES='{"chat-tickets": "chat_worker"}',
    )

    assert tasks.worker_url("chat-tickets") == "https://region-proj.cloudfunctions.net/chat_worker"
    with pytest.raises(ValueError, match="unknown queue"):
        tasks.worker_url("image-analysis")


def test_settings_repr_hides_secrets(environment, monkeypatch):
    for name in ("GEMINI_API_KEY", "VERTEXAI_ENABLED", "ANTHROPIC_API_KEY", "OLLAMA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    environment(TASK_SIGNING_SECRET="very-secret-value", OPENAI_API_KEY="sk-hidden")

    text = repr(get_settings())

    assert "very-secret-value" not in text
    assert "sk-hidden" not in text
    assert get_settings().configured_llm_providers() == ["openai"]


def _deliver(body: bytes, retry_header: str) -> tuple[int, list[int]]:
    import flask
    from pydantic import BaseModel
    from werkzeug.test import EnvironBuilder

    class Payload(BaseModel):
        n: int
        extra: object = None

    seen: list[int] = []

    @tasks.task_worker(Payload)
    def worker(payload: Payload, context: tasks.TaskContext) -> None:
        seen.append(context.retry_count)

    environ = EnvironBuilder(
        method="POST",
        data=body,
        headers={
            tasks.SIGNATURE_HEADER: tasks.sign(body),
            "X-CloudTasks-TaskRetryCount": retry_header,
        },
    ).get_environ()
    return worker(flask.Request(environ)).status_code, seen


@pytest.mark.parametrize(
    ("body", "header", "status", "seen"),
    [
        (b'{"n": 1}', "2", 200, [2]),
        (b'{"n": 1}', "9" * 5_000, 200, [0]),
        (b'{"n": 1}', "-1", 200, [0]),
        (b'{"n": ' + b"1" * 5_000 + b"}", "0", 200, []),
        (b'{"n": 1, "extra": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "0", 200, []),
    ],
)
def test_a_task_no_parser_can_read_is_dropped_never_a_crash(body, header, status, seen):
    assert _deliver(body, header) == (status, seen)


def _no_llm_keys(monkeypatch) -> None:
    """No model credentials, and none of the settings production refuses (emulators)."""
    for name in (
        "FIRESTORE_EMULATOR_HOST",
        "FIREBASE_AUTH_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "CLOUD_TASKS_EMULATOR_HOST",
        "VERTEXAI_BASE_URL",
        "SIGNING_CREDENTIALS_FILE",
        "FETCH_ALLOWED_ADDRESSES",
        "GEMINI_API_KEY",
        "VERTEXAI_ENABLED",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "OLLAMA_BASE_URL",
        "LOCAL_LLM_BASE_URL",
        "IMESSAGE_PROVIDER",
        "ARCHETYPE_LLM_PROVIDER",
    ):
        monkeypatch.delenv(name, raising=False)


def test_features_fall_back_to_the_local_model_outside_production(environment, monkeypatch):
    _no_llm_keys(monkeypatch)
    environment(APP_ENV="local", LOCAL_LLM_BASE_URL="http://127.0.0.1:1/v1")

    assert get_settings().imessage_llm() == ("local", LOCAL_LLM_MODEL)
    assert get_settings().archetype_llm() == ("local", LOCAL_LLM_MODEL)

    environment(GEMINI_API_KEY="a-key")
    assert get_settings().imessage_llm() == ("gemini", "gemini-2.5-flash")
    assert get_settings().archetype_llm() == ("gemini", "gemini-2.5-flash")


def test_without_a_local_model_the_configured_provider_stays(environment, monkeypatch):
    _no_llm_keys(monkeypatch)
    environment(APP_ENV="test", IMESSAGE_PROVIDER="openai")

    assert get_settings().imessage_llm() == ("openai", "gemini-2.5-flash")


@pytest.mark.parametrize("feature", ["imessage_llm", "archetype_llm"])
def test_production_refuses_a_provider_without_credentials(environment, monkeypatch, feature):
    _no_llm_keys(monkeypatch)
    environment(APP_ENV="production", LOCAL_LLM_BASE_URL="http://127.0.0.1:1/v1")

    with pytest.raises(RuntimeError, match="PROVIDER=gemini has no credentials"):
        getattr(get_settings(), feature)()

    environment(VERTEXAI_ENABLED="true", IMESSAGE_PROVIDER="vertexai")
    environment(ARCHETYPE_LLM_PROVIDER="vertexai")
    assert getattr(get_settings(), feature)() == ("vertexai", "gemini-2.5-flash")


@pytest.mark.parametrize("worker", ["agent_worker", "archetype_worker"])
def test_a_worker_without_its_model_key_does_not_start_in_production(worker):
    from deploy.manifest import ROOT

    env = {
        "PATH": os.environ["PATH"],
        "APP_ENV": "production",
        "TASK_SIGNING_SECRET": "a-production-secret",
    }
    started = subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path('functions/{worker}/main.py')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert started.returncode != 0
    assert "has no credentials configured" in started.stderr
    env["GEMINI_API_KEY"] = "a-key"
    started = subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path('functions/{worker}/main.py')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode == 0, started.stderr
