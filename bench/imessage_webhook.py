"""iMessage webhook: acknowledgement latency and rate, and end-to-end reply overhead.

Starts the emulator stack, the gateway, the fake LLM (answering after a fixed
delay) and a fake LoopMessage, then:

1. end to end: sends inbound texts one after another (debounce 0) and times
   each from the webhook POST until the reply reaches the fake LoopMessage,
   minus the fake model's own latency;
2. acknowledgements: a second process on loopback posts `--requests`
   deliveries (new numbers, new webhook ids) with `--concurrency` clients and
   reports each acknowledgement's latency; reply tasks are scheduled a minute
   later (the longest debounce), so workers do not compete for the CPU
   during the measurement, as they would not in production, where they are
   separate instances.

    .venv/bin/python bench/imessage_webhook.py [--replies 30] [--requests 400] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from werkzeug.serving import make_server

from devstack.emulators import free_port, running_stack
from shared.platform.config import DEFAULT_QUEUE_WORKERS
from tests.fakes.llm import API_KEY, FakeLlm
from tests.fakes.loopmessage import FakeLoopMessage
from tests.fakes.server import serving

SECRET = "bench-webhook-secret"  # noqa: S105 - a local bench's webhook secret


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def delivery(number: str, text: str = "hello") -> dict[str, str]:
    return {
        "alert_type": "message_inbound",
        "recipient": number,
        "text": text,
        "message_id": str(uuid.uuid4()),
        "webhook_id": str(uuid.uuid4()),
    }


def load(url: str, total: int, concurrency: int) -> None:
    """The load process: post `total` deliveries and print their latencies as JSON."""
    local = threading.local()

    def one(index: int) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        number = f"+1201556{index:04d}"
        started = time.perf_counter()
        response = session.post(
            url, json=delivery(number), headers={"Authorization": SECRET}, timeout=30
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(total)))
    print(json.dumps({"latencies": latencies, "wall": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=30)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--model-latency", type=float, default=0.05)
    parser.add_argument("--load", help="run as the load process against this webhook URL")
    args = parser.parse_args()
    if args.load:
        load(args.load, min(args.requests, 9999), min(args.concurrency, 16))
        return
    reply = json.dumps({"reply": "Hi!", "profile_updates": {}})
    llm = FakeLlm(delay_seconds=args.model_latency, reply=reply)
    loop = FakeLoopMessage()
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    with (
        running_stack("demo-bench", fixed_ports=False, queues=DEFAULT_QUEUE_WORKERS) as stack,
        serving(llm.app()) as llm_url,
        serving(loop.app()) as loop_url,
    ):
        os.environ.update(
            {
                **stack.env(gateway_url),
                "APP_ENV": "test",
                "GEMINI_API_KEY": API_KEY,
                "GEMINI_BASE_URL": llm_url,
                "LOOPMESSAGE_BASE_URL": loop_url,
                "LOOPMESSAGE_AUTH_KEY": loop.auth_key,
                "LOOPMESSAGE_SECRET_KEY": loop.secret_key,
                "LOOPMESSAGE_SENDER": loop.sender,
                "LOOPMESSAGE_WEBHOOK_SECRET": SECRET,
                "IMESSAGE_DEBOUNCE_SECONDS": "0",
            }
        )
        from devstack.gateway import create_app
        from shared.platform import clients
        from shared.platform.config import get_settings

        clients.reset()
        server = make_server("127.0.0.1", port, create_app(), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        webhook = f"{gateway_url}/agent/webhook"
        session = requests.Session()
        overheads = []
        for index in range(args.replies + 1):
            number = f"+1201557{index:04d}"
            started = time.perf_counter()
            response = session.post(
                webhook, json=delivery(number), headers={"Authorization": SECRET}, timeout=30
            )
            assert response.status_code == 200, response.text
            while not loop.sent_to(number):
                time.sleep(0.002)
            if index:  # the first reply warms the worker up
                overheads.append(time.perf_counter() - started - args.model_latency)
        os.environ["IMESSAGE_DEBOUNCE_SECONDS"] = "60"
        get_settings.cache_clear()
        measured = subprocess.run(
            [
                sys.executable,
                __file__,
                "--load",
                webhook,
                "--requests",
                str(args.requests),
                "--concurrency",
                str(args.concurrency),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        server.shutdown()
    result = json.loads(measured.stdout)
    acks = result["latencies"]
    print(f"replies: {args.replies}, fake model latency {args.model_latency * 1000:.0f} ms")
    print(f"end-to-end minus model p50: {percentile(overheads, 0.50) * 1000:.0f} ms")
    print(f"end-to-end minus model p95: {percentile(overheads, 0.95) * 1000:.0f} ms")
    print(f"end-to-end minus model mean: {statistics.mean(overheads) * 1000:.0f} ms")
    print(f"acks: {len(acks)} with {args.concurrency} concurrent clients (second process)")
    print(f"ack p50: {percentile(acks, 0.50) * 1000:.0f} ms")
    print(f"ack p99: {percentile(acks, 0.99) * 1000:.0f} ms")
    print(f"acks per second: {len(acks) / result['wall']:.0f}")


if __name__ == "__main__":
    main()
