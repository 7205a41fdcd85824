"""`POST /rest/{name}` latency for a trivial deployed agent, beside `POST /agents/run-code`.

One run starts the emulator stack and the gateway, saves and deploys a
trivial agent, then times `--runs` calls of each, interleaved (so both see
the same machine load):

- run-code: `POST /agents/run-code` with the agent's code in the body;
- rest: `POST /rest/{name}` (reads the deployment and the agent, then the
  same signed sandbox call).

    PYTHONPATH=. .venv/bin/python bench/rest_latency.py [--runs 100]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import requests
from werkzeug.serving import make_server

from bench.common import Row, percentile, table
from devstack.emulators import free_port, running_stack
from shared.platform.config import DEFAULT_QUEUE_WORKERS

CODE = "async def run(input_dict, tools):\n    return {'outputText': input_dict['inputText']}\n"


def timings(gateway_url: str, runs: int) -> list[Row]:
    from devstack.tokens import mint_token

    user = mint_token("bench-rest@example.com")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {user.id_token}"
    agent = session.post(
        f"{gateway_url}/agents",
        json={"name": "bench", "code": CODE, "friendlyName": "bench_echo"},
        timeout=30,
    ).json()
    deployed = session.post(f"{gateway_url}/agents/{agent['_id']}/deploy", timeout=30)
    assert deployed.status_code == 201, deployed.text
    run_body = {"code": CODE, "inputDict": {"inputText": "hi"}, "tools": {}}

    def run_code() -> None:
        response = session.post(f"{gateway_url}/agents/run-code", json=run_body, timeout=60)
        assert response.json()["result"] == {"outputText": "hi"}, response.text

    def rest() -> None:
        response = session.post(
            f"{gateway_url}/rest/bench_echo", json={"inputText": "hi"}, timeout=60
        )
        assert response.json() == {"outputText": "hi"}, response.text

    samples: dict[str, list[float]] = {"run-code": [], "rest": []}
    run_code()
    rest()
    for _ in range(runs):
        for label, once in (("run-code", run_code), ("rest", rest)):
            started = time.perf_counter()
            once()
            samples[label].append((time.perf_counter() - started) * 1000)
    return [
        Row(
            f"POST /rest/{{name}} {name} ({runs} calls)",
            percentile(samples["rest"], fraction),
            percentile(samples["run-code"], fraction),
            "POST /agents/run-code, same code",
        )
        for name, fraction in (("p50", 0.5), ("p95", 0.95))
    ]


def measure(runs: int = 100) -> list[Row]:
    """`/rest` calls next to `run-code` calls of the same code, p50 and p95 (milliseconds)."""
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    with running_stack("demo-bench", fixed_ports=False, queues=DEFAULT_QUEUE_WORKERS) as stack:
        os.environ.update({**stack.env(gateway_url), "APP_ENV": "test"})
        from devstack.gateway import create_app
        from shared.platform import clients

        clients.reset()
        server = make_server("127.0.0.1", port, create_app(), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            return timings(gateway_url, runs)
        finally:
            server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    print(table(measure(args.runs)))


if __name__ == "__main__":
    main()
