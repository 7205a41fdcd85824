"""Run-code overhead: a trivial agent in the sandbox against the same code in-process.

One run measures, for the same trivial agent, each `--runs` times:

- in-process: compile, `exec` and `asyncio.run(run(...))` in this interpreter
  (what gofannon does, with no isolation at all);
- runner: `Runner.run` (connect to the warm template, fork, isolate, run,
  kill the tree, remove the working directory);
- HTTP: `POST /agents/run-code` through the gateway, the agents function,
  a signed call to the sandbox function and back (starts the emulator stack).

    .venv/bin/python bench/run_code_overhead.py [--runs 200] [--no-http] [--isolation userns]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from collections.abc import Callable

import requests
from werkzeug.serving import make_server

from devstack.emulators import free_port, running_stack
from shared.agents.sandbox.runner import Runner
from shared.platform.config import DEFAULT_QUEUE_WORKERS

CODE = "async def run(input_dict, tools):\n    return {'outputText': input_dict['inputText']}\n"
CONTEXT = {"platformUrl": "http://127.0.0.1:9", "token": "run:bench", "agentName": "bench"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed(label: str, runs: int, once: Callable[[], object]) -> list[float]:
    once()  # warm-up (starts the template, opens connections)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        once()
        samples.append((time.perf_counter() - started) * 1000)
    print(
        f"{label:<12} p50 {statistics.median(samples):7.2f} ms   "
        f"p95 {percentile(samples, 0.95):7.2f} ms   mean {statistics.fmean(samples):7.2f} ms"
    )
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

            return timed("HTTP", runs, once)
        finally:
            server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--isolation", choices=["auto", "root", "userns", "none"], default="auto")
    args = parser.parse_args()
    baseline = timed("in-process", args.runs, in_process)
    runner = Runner(isolation=None if args.isolation == "auto" else args.isolation)
    try:

        def sandboxed() -> object:
            events = list(runner.run(CODE, {"inputText": "hi"}, {}, CONTEXT))
            assert events[-1]["done"]["result"] == {"outputText": "hi"}, events
            return events

        sandbox = timed("runner", args.runs, sandboxed)
    finally:
        runner.close()
    base = statistics.median(baseline)
    print(
        f"runner overhead p50 {statistics.median(sandbox) - base:.2f} ms "
        f"p95 {percentile(sandbox, 0.95) - percentile(baseline, 0.95):.2f} ms"
    )
    if not args.no_http:
        http = http_samples(args.runs)
        print(
            f"HTTP overhead   p50 {statistics.median(http) - base:.2f} ms "
            f"p95 {percentile(http, 0.95) - percentile(baseline, 0.95):.2f} ms"
        )


if __name__ == "__main__":
    main()
