"""iMessage webhook: acknowledgements per second next to a bare function, and reply latency.

Starts the emulator stack, the gateway, the fake LLM (answering after a fixed
delay) and a fake LoopMessage, then:

1. end to end: sends inbound texts one after another (debounce 0) and times
   each from the webhook POST until the reply reaches the fake LoopMessage,
   next to the same model call made directly (interleaved);
2. acknowledgements: the `agent_webhook` function and a bare
   functions-framework function making the same Firestore commit and Cloud
   Tasks call (`bench/bare/webhook_fn.py`) each run in their own process; a
   third process on loopback posts `--requests` deliveries to each (new
   numbers, new webhook ids; two rounds each, alternating) with
   `--concurrency` clients. Reply tasks are scheduled a minute later (the
   longest debounce), so workers do not compete for the CPU during the
   measurement, as they would not in production, where they are separate
   instances.

    PYTHONPATH=. .venv/bin/python bench/imessage_webhook.py [--replies 30] [--requests 400]
        [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from werkzeug.serving import make_server

from bench.common import Row, percentile, table
from deploy.manifest import ROOT
from devstack.emulators import free_port, running_stack
from devstack.functions_index import deployed_functions
from shared.platform.config import DEFAULT_QUEUE_WORKERS
from tests.fakes.llm import API_KEY, FakeLlm
from tests.fakes.loopmessage import FakeLoopMessage
from tests.fakes.server import function_process, serving

SECRET = "bench-webhook-secret"  # noqa: S105 - a local bench's webhook secret


def delivery(number: str, text: str = "hello") -> dict[str, str]:
    return {
        "alert_type": "message_inbound",
        "recipient": number,
        "text": text,
        "message_id": str(uuid.uuid4()),
        "webhook_id": str(uuid.uuid4()),
    }


def load(url: str, total: int, concurrency: int, first: int) -> None:
    """The load process: post `total` deliveries and print their latencies as JSON.

    Each delivery comes from its own number, `+120155` and five digits from `first` on.
    """
    local = threading.local()

    def one(index: int) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        number = f"+120155{first + index:05d}"
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


def _load(url: str, total: int, concurrency: int, first: int) -> tuple[list[float], float]:
    measured = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            url,
            "--requests",
            str(total),
            "--concurrency",
            str(concurrency),
            "--first",
            str(first),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if measured.returncode:
        raise RuntimeError(f"the load process failed:\n{measured.stderr[-3000:]}")
    result = json.loads(measured.stdout)
    return result["latencies"], result["wall"]


def _acks(requests_total: int, concurrency: int) -> list[Row]:
    """Acknowledgements of our webhook function and of the bare one, each in its own process."""
    spec = deployed_functions()["agent_webhook"]
    framework = [sys.executable, "-m", "functions_framework"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ours_args = [*framework, f"--target={spec.entry_point}", f"--source={spec.source / 'main.py'}"]
    bare_args = [*framework, "--target=webhook", f"--source={ROOT / 'bench/bare/webhook_fn.py'}"]
    with function_process(ours_args, env) as ours_url, function_process(bare_args, env) as bare_url:
        urls = {"ours": f"{ours_url}/agent/webhook", "bare": bare_url}
        for url in urls.values():  # warm-up: clients built, first commit made
            _load(url, concurrency, concurrency, 90_000 if url == bare_url else 95_000)
        latencies: dict[str, list[float]] = {"ours": [], "bare": []}
        walls = {"ours": 0.0, "bare": 0.0}
        half = max(requests_total // 2, 1)
        for round_index in range(2):
            for offset, name in enumerate(urls):
                first = offset * 40_000 + round_index * half
                samples, wall = _load(urls[name], half, concurrency, first)
                latencies[name].extend(samples)
                walls[name] += wall
    total = len(latencies["ours"])
    label = f"({total} deliveries, {concurrency} clients)"
    return [
        Row(
            f"webhook acks per second {label}",
            total / walls["ours"],
            total / walls["bare"],
            "bare function bench/bare/webhook_fn.py:webhook",
            "/s",
        ),
        *(
            Row(
                f"webhook ack {name} {label}",
                percentile(latencies["ours"], fraction) * 1000,
                percentile(latencies["bare"], fraction) * 1000,
                "bare function bench/bare/webhook_fn.py:webhook",
            )
            for name, fraction in (("p50", 0.5), ("p99", 0.99))
        ),
    ]


def measure(
    replies: int = 30, requests_total: int = 400, concurrency: int = 4, model_latency: float = 0.05
) -> list[Row]:
    """Reply latency next to the bare model call, acknowledgements next to a bare function."""
    reply = json.dumps({"reply": "Hi!", "profile_updates": {}})
    llm = FakeLlm(delay_seconds=model_latency, reply=reply)
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
        from shared.llm import gateway
        from shared.platform import clients
        from shared.platform.config import get_settings

        clients.reset()
        server = make_server("127.0.0.1", port, create_app(), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            settings = get_settings()
            model_call = gateway.LlmRequest(
                provider=settings.imessage_provider,
                model=settings.imessage_model,
                messages=[gateway.Message(role="user", content="hello")],
            )
            webhook = f"{gateway_url}/agent/webhook"
            session = requests.Session()
            rounds: list[float] = []
            direct: list[float] = []
            for index in range(replies + 1):
                number = f"+1201557{index:04d}"
                started = time.perf_counter()
                response = session.post(
                    webhook, json=delivery(number), headers={"Authorization": SECRET}, timeout=30
                )
                assert response.status_code == 200, response.text
                while not loop.sent_to(number):
                    time.sleep(0.002)
                elapsed = time.perf_counter() - started
                started = time.perf_counter()
                gateway.complete(model_call)
                if index:  # the first reply warms the worker up
                    rounds.append(elapsed)
                    direct.append(time.perf_counter() - started)
            os.environ["IMESSAGE_DEBOUNCE_SECONDS"] = "60"
            get_settings.cache_clear()
            rows = _acks(requests_total, concurrency)
        finally:
            server.shutdown()
    return [
        *(
            Row(
                f"iMessage webhook to reply sent {name} ({replies} replies)",
                percentile(rounds, fraction) * 1000,
                percentile(direct, fraction) * 1000,
                f"the same model call in-process (fake model {model_latency * 1000:.0f} ms)",
            )
            for name, fraction in (("p50", 0.5), ("p95", 0.95))
        ),
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=30)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--model-latency", type=float, default=0.05)
    parser.add_argument("--load", help="run as the load process against this webhook URL")
    parser.add_argument("--first", type=int, default=0, help="the load process's first number")
    args = parser.parse_args()
    if args.load:
        load(args.load, min(args.requests, 9999), min(args.concurrency, 16), args.first)
        return
    print(table(measure(args.replies, args.requests, args.concurrency, args.model_latency)))


if __name__ == "__main__":
    main()
