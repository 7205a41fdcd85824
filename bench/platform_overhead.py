"""Per-request overhead and cold start of our functions next to bare functions, in one run.

Starts the emulator stack, seeds a user (profile, account, session, a
cleaned photo), then:

- cold start: for each HTTP function, process spawn to the first 200 on a
  route that uses its clients, next to a bare functions-framework function
  (`bench/bare/`) that imports the same Google client libraries and makes
  the same call, and next to that bare function validating its input and
  answer with pydantic (`bench/bare/validated.py`: the floor of any
  function that validates, as ours must); medians over `--runs`
  interleaved starts. Task workers start on a signed task whose document
  is gone (one read, then the task is dropped with a 200);
- warm latency: the main reads and writes, each next to a bare function
  making the same Firestore and Auth calls and returning the same JSON
  (requests alternate between the two processes, so both see the same
  machine); p50 and p99 over `--requests`.

`measure` returns every figure next to its baseline as `bench.common.Row`s
(ratios from this run); `main` prints them.

    PYTHONPATH=. .venv/bin/python bench/platform_overhead.py [--runs 7] [--requests 400]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from bench.common import Row, table
from deploy.manifest import ROOT
from devstack.emulators import free_port, running_stack
from devstack.functions_index import deployed_functions
from shared.platform.config import DEFAULT_QUEUE_WORKERS
from shared.platform.tasks import SIGNATURE_HEADER, sign

BARE = ROOT / "bench" / "bare"


@dataclass
class Probe:
    """One request: what it asks, and the bare function that does the same work."""

    label: str
    function: str
    method: str
    path: str
    baseline: str
    body: dict | None = None
    token: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    def send(self, session: Any, url: str, headers: dict[str, str]) -> requests.Response:
        """Make the probe's request (a task body is sent as the exact bytes that were signed)."""
        if self.function.endswith("_worker"):
            data = json.dumps(self.body).encode()
            signed = {**self.headers, "Content-Type": "application/json"}
            signed[SIGNATURE_HEADER] = sign(data)
            return session.request(
                self.method, url + self.path, data=data, headers=signed, timeout=10
            )
        return session.request(
            self.method, url + self.path, json=self.body, headers=headers, timeout=10
        )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextlib.contextmanager
def serve(
    target: str, source: str, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            f"--target={target}",
            f"--source={source}",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.wait(timeout=10)


def first_200(url: str, probe: Probe, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = probe.send(requests, url, headers)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)
            continue
        if response.status_code != 200:
            raise RuntimeError(f"{probe.label}: {response.status_code} {response.text[:200]}")
        return


def targets(probe: Probe) -> tuple[tuple[str, str], tuple[str, str]]:
    spec = deployed_functions()[probe.function]
    module, target = probe.baseline.split(":")
    return (spec.entry_point, str(spec.source / "main.py")), (target, str(BARE / module))


def cold_start(probe: Probe, headers: dict[str, str], runs: int) -> tuple[float, float, float]:
    """Median process spawn to first 200: ours, the bare function, the bare function validated.

    The three start in turn, `runs` times, so all see the same machine.
    """
    (ours_target, ours_source), (bare_target, bare_source) = targets(probe)
    floor_env = {"BARE_MODULE": probe.baseline.split(".py:")[0]}
    starts = (
        (ours_target, ours_source, None),
        (bare_target, bare_source, None),
        (bare_target, str(BARE / "validated.py"), floor_env),
    )
    samples: tuple[list[float], ...] = ([], [], [])
    for _ in range(runs):
        for (target, source, extra_env), times in zip(starts, samples, strict=True):
            started = time.perf_counter()
            with serve(target, source, extra_env) as (url, _):
                first_200(url, probe, headers)
                times.append(time.perf_counter() - started)
    ours, bare, floor = (statistics.median(times) for times in samples)
    return ours, bare, floor


def warm(probe: Probe, headers: dict[str, str], count: int) -> tuple[list[float], list[float]]:
    (ours_target, ours_source), (bare_target, bare_source) = targets(probe)
    with (
        serve(ours_target, ours_source) as (ours_url, _),
        serve(bare_target, bare_source) as (bare_url, _),
    ):
        first_200(ours_url, probe, headers)
        first_200(bare_url, probe, headers)
        sessions = (requests.Session(), requests.Session())
        samples: tuple[list[float], list[float]] = ([], [])
        for index in range(count + 20):
            for url, session, times in zip((ours_url, bare_url), sessions, samples, strict=True):
                started = time.perf_counter()
                response = probe.send(session, url, headers)
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                if index >= 20:
                    times.append(elapsed)
        return samples


def serve_spec() -> str:
    """Serve a small OpenAPI document on loopback (for the connectors probe); return its URL."""
    import http.server
    import threading

    document = json.dumps({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}}).encode()

    class Spec(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Spec)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/openapi.json"


def seed(stack_env: dict[str, str]) -> tuple[str, str, str, str]:
    """Create the bench user's profile, account, session and photo; return ids and a token."""
    from devstack.tokens import mint_token
    from shared.agents import accounts, chat
    from shared.platform import clients
    from shared.platform.auth import Principal
    from shared.social import users

    user = mint_token(f"bench-{uuid.uuid4().hex[:8]}@example.com")
    principal = Principal(
        kind="firebase", subject=user.uid, user_id=user.uid, email=None, email_verified=False
    )
    users.create_user(principal, users.CreateUserRequest(bio="bench"))
    accounts.get_account(principal)
    session_id = uuid.uuid4().hex
    chat.session_ref(user.uid, session_id).set(
        {
            "sessionId": session_id,
            "ownerId": user.uid,
            "provider_config": {"provider": "gemini", "model": "m", "parameters": {}},
            "createdAt": datetime.now(UTC),
            "updatedAt": datetime.now(UTC),
        }
    )
    blob_name = f"profiles/{user.uid}/bench.jpg"
    bucket = clients.storage().bucket(stack_env["PROFILES_BUCKET"])
    blob = bucket.blob(blob_name)
    blob.metadata = {"cleaned": "1"}
    blob.upload_from_string(b"\xff\xd8\xff" + b"0" * 20_000, content_type="image/jpeg")
    return user.uid, user.id_token, session_id, f"{stack_env['PROFILES_BUCKET']}/{blob_name}"


def measure(runs: int = 7, requests_per_probe: int = 400) -> list[Row]:
    """Cold starts and warm latency of our functions next to the bare ones (see the docstring)."""
    with running_stack("demo-bench", fixed_ports=False, queues=DEFAULT_QUEUE_WORKERS) as stack:
        spec_url = serve_spec()
        env = {
            **stack.env("http://127.0.0.1:9"),
            "APP_ENV": "test",
            "FETCH_ALLOWED_ADDRESSES": json.dumps([spec_url.split("/")[2]]),
        }
        os.environ.update(env)
        uid, token, session_id, image = seed(env)
        auth = {"Authorization": f"Bearer {token}"}
        cold = [
            Probe("meta GET /health", "meta", "GET", "/health", "firestore_fn.py:health"),
            Probe(
                "auth GET /auth/validate", "auth", "GET", "/auth/validate", "auth_fn.py:validate"
            ),
            Probe("users GET /users/{id}", "users", "GET", f"/users/{uid}", "auth_fn.py:get_user"),
            Probe("account GET /users/me", "account", "GET", "/users/me", "auth_fn.py:me"),
            Probe(
                "providers GET /providers", "providers", "GET", "/providers", "auth_fn.py:providers"
            ),
            Probe(
                "chat GET /sessions/{id}/config",
                "chat",
                "GET",
                f"/sessions/{session_id}/config",
                "auth_fn.py:session",
            ),
            Probe(
                "storage GET /storage/profile-image/...",
                "storage",
                "GET",
                f"/storage/profile-image/{image}",
                "storage_fn.py:image",
            ),
            Probe("demos GET /demos", "demos", "GET", "/demos", "auth_fn.py:demos"),
            Probe(
                "agents GET /data-store/namespaces",
                "agents",
                "GET",
                "/data-store/namespaces",
                "auth_fn.py:namespaces",
            ),
            Probe(
                "connectors POST /specs/fetch",
                "connectors",
                "POST",
                "/specs/fetch",
                "auth_fn.py:fetch_spec",
                body={"url": spec_url},
            ),
            Probe(
                "chat_worker task for a missing ticket",
                "chat_worker",
                "POST",
                "/",
                "firestore_fn.py:missing_task",
                body={"ticketId": "bench-missing"},
            ),
            Probe(
                "deletion_worker task for a finished deletion",
                "deletion_worker",
                "POST",
                "/",
                "firestore_fn.py:missing_task",
                body={"userId": "bench-missing"},
            ),
        ]
        warm_probes = [
            cold[2],
            Probe(
                "GET /users/{id}/public",
                "users",
                "GET",
                f"/users/{uid}/public",
                "firestore_fn.py:public",
            ),
            Probe(
                "PUT /users/{id} {bio}",
                "users",
                "PUT",
                f"/users/{uid}",
                "auth_fn.py:put_user",
                body={"bio": "warm"},
            ),
            cold[3],
        ]
        rows = []
        for probe in cold:
            ours, bare, floor = cold_start(probe, auth, runs)
            label = f"cold start {probe.label} (median of {runs})"
            rows.append(Row(label, ours * 1000, bare * 1000, f"bare function {probe.baseline}"))
            rows.append(Row(label, ours * 1000, floor * 1000, "the same, validated with pydantic"))
        for probe in warm_probes:
            ours_times, bare_times = warm(probe, auth, requests_per_probe)
            label = probe.label.split(" ", 1)[1] if probe.label.startswith("users") else probe.label
            label = label.removeprefix("account ")
            for name, fraction in (("p50", 0.5), ("p99", 0.99)):
                rows.append(
                    Row(
                        f"warm {label} {name} ({requests_per_probe} requests)",
                        percentile(ours_times, fraction) * 1000,
                        percentile(bare_times, fraction) * 1000,
                        f"bare function {probe.baseline}",
                    )
                )
        return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    print(table(measure(args.runs, args.requests)))


if __name__ == "__main__":
    main()
