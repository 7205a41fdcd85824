"""Augmentation wall time: N contacts with a slow fake model, against N model calls in a row.

Starts the emulator stack, the gateway, the fake PDL and the fake LLM (each
model call takes `--model-latency`), creates a user with `--contacts`
network entries, then times `POST /users/{id}/augment` until the run is
finished, twice in one run:

- through the Tasks emulator, which dispatches one task of a queue at a
  time (like a queue with `max_concurrent_dispatches: 1`);
- with the queue paused and the same signed tasks (listed from the
  emulator) delivered `--concurrency` at a time, as Cloud Tasks does with a
  queue's concurrent dispatches.

The first is shown next to N model calls in a row (computed), the fan-out
next to the first (measured).

    PYTHONPATH=. .venv/bin/python bench/augment_throughput.py [--contacts 50] [--model-latency 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from werkzeug.serving import make_server

from bench.common import Row, table
from devstack.emulators import free_port, running_stack
from shared.platform.config import DEFAULT_QUEUE_WORKERS
from tests.fakes.llm import API_KEY, FakeLlm
from tests.fakes.pdl import API_KEY as PDL_API_KEY
from tests.fakes.pdl import FakePdl
from tests.fakes.server import serving

PROJECT = "demo-bench"
QUEUE = "archetype-generation"
ARCHETYPE = {"name": {"first": "Ada", "last": "Archetype"}, "bio": "A bio.", "probability": 0.5}


def create_user(gateway_url: str, email: str, contacts: int) -> dict[str, str]:
    from devstack.tokens import mint_token

    headers = {"Authorization": f"Bearer {mint_token(email).id_token}"}
    network = [
        {"name": f"Contact {n}", "email": f"c{n}-{email}", "timeSpent": n} for n in range(contacts)
    ]
    created = requests.post(
        f"{gateway_url}/users",
        json={"name": {"first": "Bench"}, "metadata": {"network": network}},
        headers=headers,
        timeout=30,
    )
    created.raise_for_status()
    return {**headers, "X-User": created.json()["userId"]}


def augment(gateway_url: str, headers: dict[str, str]) -> None:
    user_id = headers["X-User"]
    response = requests.post(f"{gateway_url}/users/{user_id}/augment", headers=headers, timeout=60)
    response.raise_for_status()


def wait_finished(gateway_url: str, headers: dict[str, str]) -> dict[str, object]:
    user_id = headers["X-User"]
    while True:
        user = requests.get(f"{gateway_url}/users/{user_id}", headers=headers, timeout=30).json()
        run = user["metadata"]["augmentation"]
        if run["finished_at"] is not None:
            return run
        time.sleep(0.05)


def deliver_concurrently(concurrency: int) -> None:
    """List the paused queue's tasks and deliver each once, `concurrency` at a time."""
    from shared.platform import clients
    from shared.platform.config import get_settings

    settings = get_settings()
    client = clients.tasks()
    parent = client.queue_path(settings.project_id, settings.tasks_location, QUEUE)
    from google.cloud import tasks_v2

    request = tasks_v2.ListTasksRequest(parent=parent, response_view=tasks_v2.Task.View.FULL)
    listed = list(client.list_tasks(request=request))

    def deliver(task: object) -> None:
        http = task.http_request  # type: ignore[attr-defined]
        requests.post(http.url, data=http.body, headers=dict(http.headers), timeout=60)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(deliver, listed))


def measure(contacts: int = 50, model_latency: float = 0.3, concurrency: int = 10) -> list[Row]:
    """Augmentation wall times: one task at a time, and fanned out next to it (seconds)."""
    llm = FakeLlm(delay_seconds=model_latency, reply=json.dumps(ARCHETYPE))
    pdl = FakePdl()
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    with (
        running_stack(PROJECT, fixed_ports=False, queues=DEFAULT_QUEUE_WORKERS) as stack,
        serving(llm.app()) as llm_url,
        serving(pdl.app()) as pdl_url,
    ):
        os.environ.update(
            {
                **stack.env(gateway_url),
                "APP_ENV": "test",
                "GEMINI_API_KEY": API_KEY,
                "GEMINI_BASE_URL": llm_url,
                "PDL_API_KEY": PDL_API_KEY,
                "PDL_BASE_URL": pdl_url,
            }
        )
        from devstack.gateway import create_app
        from shared.platform import clients
        from shared.platform.config import get_settings

        clients.reset()
        server = make_server("127.0.0.1", port, create_app(), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()

        sequential = contacts * model_latency
        emulator_user = create_user(gateway_url, "bench-emulator@example.com", contacts)
        started = time.perf_counter()
        augment(gateway_url, emulator_user)
        run = wait_finished(gateway_url, emulator_user)
        through_emulator = time.perf_counter() - started
        assert run["status"] == "completed", run

        settings = get_settings()
        queue = clients.tasks().queue_path(settings.project_id, settings.tasks_location, QUEUE)
        clients.tasks().pause_queue(name=queue)
        concurrent_user = create_user(gateway_url, "bench-concurrent@example.com", contacts)
        started = time.perf_counter()
        augment(gateway_url, concurrent_user)
        deliver_concurrently(concurrency)
        run = wait_finished(gateway_url, concurrent_user)
        concurrent = time.perf_counter() - started
        assert run["status"] == "completed", run

        server.shutdown()
    return [
        Row(
            f"augment {contacts} contacts, one task at a time",
            through_emulator,
            sequential,
            f"{contacts} x {model_latency * 1000:.0f} ms model calls (computed)",
            "s",
        ),
        Row(
            f"augment {contacts} contacts, fan-out {concurrency} concurrent",
            concurrent,
            through_emulator,
            "the same augmentation, one task at a time",
            "s",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=50)
    parser.add_argument("--model-latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    print(table(measure(args.contacts, args.model_latency, args.concurrency)))


if __name__ == "__main__":
    main()
