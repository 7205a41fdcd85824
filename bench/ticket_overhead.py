"""Chat ticket overhead: POST /chat to `completed`, next to the same model call made directly.

Starts the emulator stack, the gateway and the fake LLM (answering after a
fixed delay), signs a user in through the Auth emulator, then, interleaved
`--tickets` times: sends a ticket and polls it until it completes (the
Tasks emulator dispatches it to the chat worker), and makes the same model
call in this process through the LLM gateway (the baseline: what the ticket
wraps).

    PYTHONPATH=. .venv/bin/python bench/ticket_overhead.py [--tickets 200] [--model-latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import requests
from werkzeug.serving import make_server

from bench.common import Row, percentile, table
from devstack.emulators import free_port, running_stack
from shared.platform.config import DEFAULT_QUEUE_WORKERS
from tests.fakes.llm import API_KEY, FakeLlm
from tests.fakes.server import serving

BODY = {
    "provider": "gemini",
    "model": "gemini-2.5-flash",
    "messages": [{"role": "user", "content": "hello"}],
}


def measure(tickets: int = 200, model_latency: float = 0.05) -> list[Row]:
    """Ticket round trips next to direct model calls (p50 and p95, milliseconds)."""
    llm = FakeLlm(delay_seconds=model_latency)
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
        from shared.llm import gateway
        from shared.platform import clients

        clients.reset()
        server = make_server("127.0.0.1", port, create_app(), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            headers = {"Authorization": f"Bearer {mint_token('bench@example.com').id_token}"}
            session = requests.Session()
            request = gateway.LlmRequest.model_validate(BODY)
            gateway.complete(request)  # warm-up: the provider's client
            rounds: list[float] = []
            direct: list[float] = []
            for _ in range(tickets):
                started = time.perf_counter()
                ticket_id = session.post(
                    f"{gateway_url}/chat", json=BODY, headers=headers, timeout=30
                ).json()["ticket_id"]
                while True:
                    status = session.get(
                        f"{gateway_url}/chat/{ticket_id}", headers=headers, timeout=30
                    ).json()["status"]
                    if status in ("completed", "failed"):
                        break
                    time.sleep(0.005)
                assert status == "completed", status
                rounds.append(time.perf_counter() - started)
                started = time.perf_counter()
                gateway.complete(request)
                direct.append(time.perf_counter() - started)
        finally:
            server.shutdown()
    baseline = f"the same model call in-process (fake model {model_latency * 1000:.0f} ms)"
    return [
        Row(
            f"chat ticket POST to completed {name} ({tickets} tickets)",
            percentile(rounds, fraction) * 1000,
            percentile(direct, fraction) * 1000,
            baseline,
        )
        for name, fraction in (("p50", 0.5), ("p95", 0.95))
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--model-latency", type=float, default=0.05)
    args = parser.parse_args()
    print(table(measure(args.tickets, args.model_latency)))


if __name__ == "__main__":
    main()
