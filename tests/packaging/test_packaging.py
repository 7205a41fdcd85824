"""Each function, staged as it is deployed, runs from only its own requirements and settings.

For every function of the manifest: stage its folder (its own code,
`shared/`, its `requirements.txt`), install those requirements into a fresh
virtual environment, start functions-framework from it with only the
function's deploy environment (secrets given test values), and make it
answer: an HTTP function's router answers an unknown path with its JSON
404, a worker accepts a task signed with its deploy secret (and drops the
empty payload), an event function handles an event for another bucket. A
requirement missing from a function's file, or a setting missing from its
deploy environment that it reads at start, fails here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from deploy.manifest import Function, load, stage
from tests.fakes.server import function_process

SECRET = "packaging-test-secret"


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("staged")
    return {path.name: path for path in stage(load(), root)}


def fresh_venv(folder: Path) -> Path:
    uv = Path(sys.executable).with_name("uv")
    venv = folder / ".venv"
    subprocess.run([str(uv), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    subprocess.run(
        [str(uv), "pip", "install", "-q", "-r", str(folder / "requirements.txt")],
        env={**os.environ, "VIRTUAL_ENV": str(venv)},
        check=True,
    )
    return venv


def deploy_env(function: Function) -> dict[str, str]:
    manifest = load()
    env = {
        key: manifest.resolve(value, "demo-packaging")
        for key, value in function.environment.items()
    }
    env.update({name: SECRET for name in function.secrets})
    env["APP_ENV"] = "test"  # production refuses to run without real Google credentials
    return env


def serving(function: Function, folder: Path, venv: Path) -> contextlib.AbstractContextManager[str]:
    return function_process(
        [
            str(venv / "bin" / "functions-framework"),
            f"--target={function.entry_point}",
            "--source=main.py",
            *(["--signature-type=cloudevent"] if function.event_triggered else []),
        ],
        {"PATH": os.environ["PATH"], "HOME": str(folder), **deploy_env(function)},
        cwd=folder,
    )


def signed_task(body: bytes) -> dict[str, str]:
    import hashlib
    import hmac

    signature = "v1=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Task-Signature": signature}


@pytest.mark.parametrize("name", sorted(load().functions))
def test_function_runs_from_its_own_package(staged, name):
    function = load().functions[name]
    folder = staged[name]
    venv = fresh_venv(folder)

    with serving(function, folder, venv) as url:
        if function.queue:
            response = requests.post(url, data=b"{}", headers=signed_task(b"{}"), timeout=10)
            forged = requests.post(url, data=b"{}", headers=signed_task(b"[]"), timeout=10)
            assert (response.status_code, forged.status_code) == (200, 401), response.text
            assert response.json() == {"status": "dropped"}
        elif function.event_triggered:
            event = {"bucket": "someone-elses-bucket", "name": "profiles/x/y.jpg"}
            response = requests.post(
                url,
                data=json.dumps(event),
                headers={
                    "Content-Type": "application/json",
                    "ce-specversion": "1.0",
                    "ce-type": "google.cloud.storage.object.v1.finalized",
                    "ce-source": "//storage.googleapis.com/projects/_/buckets/someone-elses-bucket",
                    "ce-id": "1",
                },
                timeout=10,
            )
            assert response.status_code in (200, 204), response.text
        elif not function.public:
            # A private service function (the sandbox) refuses what the platform did not sign.
            response = requests.post(url, data=b"{}", headers=signed_task(b"{}"), timeout=10)
            assert response.status_code == 401, response.text
        else:
            response = requests.get(url + "/no/such/route", timeout=10)
            assert response.status_code == 404, response.text
            assert response.json() == {"detail": "Not Found"}

    site = next((venv / "lib").glob("python*/site-packages"))
    installed = {path.name.split("-")[0].lower() for path in site.glob("*.dist-info")}
    if not function.face_models:
        assert not {"deepface", "onnxruntime"} & installed, name
    if name == "sandbox":
        cloud = {dist for dist in installed if dist.startswith(("google_", "firebase", "grpc"))}
        assert not cloud, cloud
    shutil.rmtree(venv)
