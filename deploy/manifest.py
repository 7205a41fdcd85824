"""The deploy manifest (`deploy/functions.yaml`) and what is generated from it.

One description of every function (trigger, access, resources, settings,
secrets, queues) gives: the Cloud Build deploy steps and queue set-up
(`cloudbuild.yaml`), each function's deploy environment, the staged source
folders, and the local gateway's function table. Capabilities bring their
settings with them, so a function that enqueues can never be deployed
without the task secret again.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "functions.yaml"
STAGE_ROOT = ROOT / "build" / "functions"
FUNCTIONS_URL = "https://${_REGION}-${PROJECT_ID}.cloudfunctions.net"
RUNTIME = "python311"
FINALIZED = "google.cloud.storage.object.v1.finalized"
LLM_SECRETS = ("GEMINI_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")


@dataclass(frozen=True)
class Queue:
    """A Cloud Tasks queue and the policy Cloud Tasks retries with."""

    name: str
    worker: str
    max_attempts: int
    min_backoff: str
    max_backoff: str
    max_concurrent_dispatches: int


@dataclass(frozen=True)
class Function:
    """One deployed function, as the manifest describes it."""

    name: str
    public: bool
    memory: str
    queue: str | None = None
    storage_finalize: str | None = None
    timeout: str | None = None
    cpu: str | None = None
    concurrency: int | None = None
    service_account: str | None = None
    plain_env: dict[str, str] = field(default_factory=dict)
    plain_secrets: tuple[str, ...] = ()
    enqueues: tuple[str, ...] = ()
    llm: bool = False
    face_models: bool = False

    @property
    def source(self) -> Path:
        """The function's own code."""
        return ROOT / "functions" / self.name

    @property
    def entry_point(self) -> str:
        """The entry point's name (the function's name)."""
        return self.name

    @property
    def event_triggered(self) -> bool:
        """Whether the function takes CloudEvents (Eventarc) instead of HTTP requests."""
        return self.storage_finalize is not None

    @property
    def event_filters(self) -> dict[str, str]:
        """The Eventarc trigger's filters, empty for HTTP functions."""
        if self.storage_finalize is None:
            return {}
        return {"type": FINALIZED, "bucket": self.storage_finalize}

    @property
    def environment(self) -> dict[str, str]:
        """Every plain variable the deploy sets (substitutions not resolved)."""
        env = {"APP_ENV": "production", "GOOGLE_CLOUD_PROJECT": "${PROJECT_ID}"}
        if self.llm:
            env["VERTEXAI_ENABLED"] = "true"
        if self.enqueues:
            env["TASKS_LOCATION"] = "${_REGION}"
            env["TASKS_TARGET_BASE_URL"] = FUNCTIONS_URL
            env["TASKS_INVOKER_SERVICE_ACCOUNT"] = "${_TASKS_INVOKER}"
        if self.face_models:
            env["DEEPFACE_HOME"] = "/workspace/models"
        return {**env, **self.plain_env}

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every variable the deploy fills from Secret Manager."""
        names = list(self.plain_secrets)
        if self.llm:
            names += LLM_SECRETS
        if self.enqueues or self.queue:
            names.append("TASK_SIGNING_SECRET")
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Manifest:
    """The whole manifest."""

    substitutions: dict[str, str]
    secret_names: dict[str, str]
    queues: dict[str, Queue]
    functions: dict[str, Function]

    def resolve(self, value: str, project: str = "") -> str:
        """Replace `${_NAME}` substitutions (and `${PROJECT_ID}`) in a value."""
        values = {**self.substitutions, "PROJECT_ID": project}
        for _ in range(3):
            value = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), ""), value)
        return value


@cache
def load(path: Path = MANIFEST) -> Manifest:
    """Read and check the manifest.

    Raises:
        ValueError: A secret without a Secret Manager name, or an unknown queue.
    """
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    queues = {name: Queue(name=name, **spec) for name, spec in raw["queues"].items()}
    functions = {}
    for name, spec in raw["functions"].items():
        trigger = spec.get("trigger") or {}
        functions[name] = Function(
            name=name,
            public=bool(spec.get("public", False)),
            memory=str(spec["memory"]),
            queue=trigger.get("queue"),
            storage_finalize=trigger.get("storage_finalize"),
            timeout=spec.get("timeout"),
            cpu=spec.get("cpu"),
            concurrency=spec.get("concurrency"),
            service_account=spec.get("service_account"),
            plain_env={key: str(value) for key, value in (spec.get("env") or {}).items()},
            plain_secrets=tuple(spec.get("secrets") or ()),
            enqueues=tuple(spec.get("enqueues") or ()),
            llm=bool(spec.get("llm", False)),
            face_models=bool(spec.get("face_models", False)),
        )
    manifest = Manifest(
        substitutions={key: str(value) for key, value in raw["substitutions"].items()},
        secret_names=dict(raw["secrets"]),
        queues=queues,
        functions=functions,
    )
    for function in functions.values():
        unknown = [q for q in (*function.enqueues, function.queue) if q and q not in queues]
        missing = [s for s in function.secrets if s not in manifest.secret_names]
        if unknown or missing:
            raise ValueError(f"{function.name}: unknown queues {unknown}, secrets {missing}")
    return manifest


def _deploy_step(manifest: Manifest, function: Function) -> dict[str, Any]:
    args = [
        "functions",
        "deploy",
        function.name,
        "--gen2",
        f"--runtime={RUNTIME}",
        "--region=${_REGION}",
        f"--source=build/functions/{function.name}",
        f"--entry-point={function.entry_point}",
    ]
    if function.event_triggered:
        args += [f"--trigger-event-filters={k}={v}" for k, v in function.event_filters.items()]
    else:
        args.append("--trigger-http")
        args.append("--allow-unauthenticated" if function.public else "--no-allow-unauthenticated")
    if function.service_account:
        args.append(f"--service-account={function.service_account}")
    args.append(f"--memory={function.memory}")
    for flag, value in (
        ("cpu", function.cpu),
        ("timeout", function.timeout),
        ("concurrency", function.concurrency),
    ):
        if value is not None:
            args.append(f"--{flag}={value}")
    env = ",".join(f"{key}={value}" for key, value in function.environment.items())
    args.append(f"--set-env-vars={env}")
    if function.secrets:
        pairs = ",".join(f"{s}={manifest.secret_names[s]}:latest" for s in function.secrets)
        args.append(f"--set-secrets={pairs}")
    return {
        "id": f"deploy-{function.name.replace('_', '-')}",
        "name": "gcr.io/google.com/cloudsdktool/cloud-sdk:slim",
        "entrypoint": "gcloud",
        "args": args,
        "waitFor": ["stage"],
    }


def _invoker_step(function: Function) -> dict[str, Any]:
    """Cloud Tasks' service account may invoke a worker; nobody else may."""
    step = function.name.replace("_", "-")
    return {
        "id": f"invoker-{step}",
        "name": "gcr.io/google.com/cloudsdktool/cloud-sdk:slim",
        "entrypoint": "gcloud",
        "args": [
            "functions",
            "add-invoker-policy-binding",
            function.name,
            "--region=${_REGION}",
            "--member=serviceAccount:${_TASKS_INVOKER}",
        ],
        "waitFor": [f"deploy-{step}"],
    }


def _queue_script(queue: Queue) -> str:
    options = (
        f"--location=${{_REGION}} --max-attempts={queue.max_attempts}"
        f" --min-backoff={queue.min_backoff} --max-backoff={queue.max_backoff}"
        f" --max-concurrent-dispatches={queue.max_concurrent_dispatches}"
    )
    return (
        f"gcloud tasks queues update {queue.name} {options}"
        f" || gcloud tasks queues create {queue.name} {options}"
    )


def cloudbuild(manifest: Manifest) -> dict[str, Any]:
    """Build the whole `cloudbuild.yaml` document."""
    functions = list(manifest.functions.values())
    steps: list[dict[str, Any]] = [
        {
            "id": "lint",
            "name": "python:3.11",
            "entrypoint": "bash",
            "args": [
                "-c",
                "pip install -q -r requirements-dev.txt && ruff check . && ruff format --check ."
                " && mypy",
            ],
        },
        {
            "id": "tests",
            "name": "gcr.io/google.com/cloudsdktool/cloud-sdk:emulators",
            "entrypoint": "bash",
            "args": [
                "-c",
                "apt-get update -qq && apt-get install -y -qq python3-venv g++ make nodejs npm"
                " >/dev/null && make test",
            ],
            "waitFor": ["lint"],
        },
        {
            "id": "stage",
            "name": "python:3.11",
            "entrypoint": "bash",
            "args": ["-c", "pip install -q PyYAML && python -m deploy stage"],
            "waitFor": ["tests"],
        },
    ]
    if any(function.face_models for function in functions):
        copies = " && ".join(
            f"mkdir -p build/functions/{f.name}/models/.deepface/weights"
            f' && gsutil -m cp "gs://${{_MODELS_BUCKET}}/deepface/*.onnx"'
            f" build/functions/{f.name}/models/.deepface/weights/"
            for f in functions
            if f.face_models
        )
        steps.append(
            {
                "id": "fetch-face-models",
                "name": "gcr.io/google.com/cloudsdktool/cloud-sdk:slim",
                "entrypoint": "bash",
                "args": ["-c", copies],
                "waitFor": ["stage"],
            }
        )
    for function in functions:
        step = _deploy_step(manifest, function)
        if function.face_models:
            step["waitFor"] = ["fetch-face-models"]
        steps.append(step)
    workers = [f for f in functions if f.queue]
    steps += [_invoker_step(worker) for worker in workers]
    steps.append(
        {
            "id": "queues",
            "name": "gcr.io/google.com/cloudsdktool/cloud-sdk:slim",
            "entrypoint": "bash",
            "args": ["-c", " && ".join(_queue_script(q) for q in manifest.queues.values())],
            "waitFor": [f"invoker-{w.name.replace('_', '-')}" for w in workers],
        }
    )
    steps.append(
        {
            "id": "deploy-firebase",
            "name": "node:20",
            "entrypoint": "npx",
            "args": [
                "--yes",
                "firebase-tools@15.34.2",
                "deploy",
                "--only=hosting,firestore,storage",
                "--project=${PROJECT_ID}",
                "--non-interactive",
            ],
            "waitFor": [
                *(f"deploy-{f.name.replace('_', '-')}" for f in functions),
                "queues",
            ],
        }
    )
    return {"substitutions": manifest.substitutions, "steps": steps, "timeout": "3600s"}


HEADER = """\
# GENERATED by `make deploy-config` from deploy/functions.yaml: edit that, not this.
#
# lint -> tests (with the emulators) -> stage (each function's own code, shared/ and
# its own requirements into build/functions/NAME) -> deploy each function (2nd gen;
# workers and the sandbox not publicly invokable) -> invoker bindings for Cloud Tasks
# -> queues (created or updated with their retry policy) -> Hosting, rules, indexes.
"""


def render(manifest: Manifest) -> str:
    """The text of `cloudbuild.yaml`."""
    body = yaml.safe_dump(cloudbuild(manifest), sort_keys=False, width=200)
    return HEADER + body


def stage(manifest: Manifest, root: Path = STAGE_ROOT) -> list[Path]:
    """Copy each function's own files and `shared/` into its deploy folder.

    Returns:
        The staged folders.
    """
    staged = []
    for function in manifest.functions.values():
        target = root / function.name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            function.source, target, ignore=shutil.ignore_patterns("__pycache__", "shared")
        )
        shutil.copytree(
            ROOT / "shared", target / "shared", ignore=shutil.ignore_patterns("__pycache__")
        )
        staged.append(target)
    return staged
