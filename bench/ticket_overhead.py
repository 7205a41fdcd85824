"""Chat ticket overhead: POST /chat to `completed`, minus the model's own latency.

Starts the emulator stack, the gateway and the fake LLM (answering after a
fixed delay), signs a user in through the Auth emulator, then sends tickets
one after another and polls each until it completes.

    .venv/bin/python bench/ticket_overhead.py [--tickets 200] [--model-latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import requests
from werkzeug.serving import make_server

from devstack.emulators import free_port, running_stack
from shared.platform.config import DEFAULT_QUEUE_WORKERS
from tests.fakes.llm import API_KEY, FakeLlm
from tests.fakes.server import serving


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--model-latency", type=float, default=0.05)
    args = parser.parse_args()
    llm = FakeLlm(delay_seconds=args.model_latency)
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    with (
        running_stack("demo-bench", fixed_ports=False, queues=DEFAULT_QUEUE_WORKERS) as stack,
        serving(llm.app()) as llm_url,
    ):
        os.environ.update(
            {
                **stack.env(gateway_url),
                "APP_ENV": "test",
                "GEMINI_API_KEY": API_KEY,
                "GEMINI_BASE_URL": llm_url,
                "PLAN_CAPS": json.dumps({"free": 1000.0}),
            }
        )
        from devstack.gateway import create_app
        from devstack.tokens import mint_token
        from shared.platform import clients

        clients.reset()
        server = make_server("127.0.0.1", port, create_app(), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        headers = {"Authorization": f"Bearer {mint_token('bench@example.com').id_token}"}
        body = {
            "provider": "gemini",
            "model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "hello"}],
        }
        session = requests.Session()
        overheads = []
        for _ in range(args.tickets):
            started = time.perf_counter()
            ticket_id = session.post(
                f"{gateway_url}/chat", json=body, headers=headers, timeout=30
            ).json()["ticket_id"]
            while True:
                status = session.get(
                    f"{gateway_url}/chat/{ticket_id}", headers=headers, timeout=30
                ).json()["status"]
                if status in ("completed", "failed"):
                    break
                time.sleep(0.005)
            assert status == "completed", status
            overheads.append(time.perf_counter() - started - args.model_latency)
        server.shutdown()
    print(f"tickets: {args.tickets}, fake model latency {args.model_latency * 1000:.0f} ms")
    print(f"overhead p50: {percentile(overheads, 0.50) * 1000:.0f} ms")
    print(f"overhead p95: {percentile(overheads, 0.95) * 1000:.0f} ms")
    print(f"overhead mean: {statistics.mean(overheads) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
