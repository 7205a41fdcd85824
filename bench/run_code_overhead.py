"""Run-code overhead: a trivial agent in the sandbox against the same code in-process.

One run measures, for the same trivial agent, each `--runs` times:

- in-process: compile, `exec` and `asyncio.run(run(...))` in this interpreter
  (what gofannon does, with no isolation at all): the baseline;
- runner: `Runner.run` (connect to the warm template, fork, isolate, run,
  kill the tree, remove the working directory);
- HTTP: `POST /agents/run-code` through the gateway, the agents function,
  a signed call to the sandbox function and back (starts the emulator stack).

    PYTHONPATH=. .venv/bin/python bench/run_code_overhead.py [--runs 200] [--no-http]
        [--isolation userns]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Callable

import requests
from werkzeug.serving import make_server

from bench.common import Row, percentile, table
from devstack.emulators import free_port, running_stack
from shared.agents.sandbox.runner import Runner
from shared.platform.config import DEFAULT_QUEUE_WORKERS

CODE = "async def run(input_dict, tools):\n    return {'outputText': input_dict['inputText']}\n"
CONTEXT = {"platformUrl": "http://127.0.0.1:9", "token": "run:bench", "agentName": "bench"}


def timed(runs: int, once: Callable[[], object]) -> list[float]:
    once()  # warm-up (starts the template, opens connections)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        once()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def in_process() -> object:
    namespace: dict[str, object] = {}
    exec(compile(CODE, "<agent>", "exec"), namespace)  # noqa: S102 - the baseline being measured
    run = namespace["run"]
    return asyncio.run(run(input_dict={"inputText": "hi"}, tools={}))  # type: ignore[operator]


def http_samples(runs: int) -> list[float]:
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    with running_stack("demo-bench", fixed_ports=False, queues=DEFAULT_QUEUE_WORKERS) as stack:
        os.environ.update({**stack.env(gateway_url), "APP_ENV": "test"})
        from devstack.gateway import create_app
        from devstack.tokens import mint_token
        from shared.platform import clients

        clients.reset()
        server = make_server("127.0.0.1", port, create_app(), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            user = mint_token("bench@example.com")
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {user.id_token}"
            body = {"code": CODE, "inputDict": {"inputText": "hi"}, "tools": {}}

            def once() -> object:
                response = session.post(f"{gateway_url}/agents/run-code", json=body, timeout=60)
                assert response.json()["result"] == {"outputText": "hi"}, response.text
                return response

            return timed(runs, once)
        finally:
            server.shutdown()


def measure(runs: int = 200, http: bool = True, isolation: str = "auto") -> list[Row]:
    """The runner (and `POST /agents/run-code`) next to in-process execution, p50 and p95 (ms)."""
    baseline = timed(runs, in_process)
    runner = Runner(isolation=None if isolation == "auto" else isolation)
    try:

        def sandboxed() -> object:
            events = list(runner.run(CODE, {"inputText": "hi"}, {}, CONTEXT))
            assert events[-1]["done"]["result"] == {"outputText": "hi"}, events
            return events

        measured = {"sandbox runner": timed(runs, sandboxed)}
    finally:
        runner.close()
    if http:
        measured["POST /agents/run-code"] = http_samples(runs)
    return [
        Row(
            f"run code: {label} {name} ({runs} runs)",
            percentile(samples, fraction),
            percentile(baseline, fraction),
            "the same code exec'd in-process",
        )
        for label, samples in measured.items()
        for name, fraction in (("p50", 0.5), ("p95", 0.95))
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--isolation", choices=["auto", "root", "userns", "none"], default="auto")
    args = parser.parse_args()
    print(table(measure(args.runs, http=not args.no_http, isolation=args.isolation)))


if __name__ == "__main__":
    main()
