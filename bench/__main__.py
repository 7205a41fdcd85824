"""`bench/run`: every benchmark in one run, one table of ratios.

Each module's `measure(...)` returns its `bench.common.Row`s; they are
collected in order and printed as one table (Markdown), every figure next
to the baseline measured beside it in the same run. `--quick` runs each
with the smallest sizes (a smoke run: the numbers mean little); `--only`
picks modules by name.

    bench/run [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.common import Row, isolated, table


@dataclass(frozen=True)
class Benchmark:
    """A module of `bench/` and the sizes of a full and of a quick run."""

    name: str
    full: dict[str, Any]
    quick: dict[str, Any]


BENCHMARKS = (
    Benchmark(
        "platform_overhead",
        {"runs": 7, "requests_per_probe": 400},
        {"runs": 1, "requests_per_probe": 5},
    ),
    Benchmark("ticket_overhead", {"tickets": 200}, {"tickets": 3}),
    Benchmark(
        "imessage_webhook",
        {"replies": 30, "requests_total": 400, "concurrency": 4},
        {"replies": 2, "requests_total": 8, "concurrency": 2},
    ),
    Benchmark("run_code_overhead", {"runs": 200}, {"runs": 3}),
    Benchmark("rest_latency", {"runs": 100}, {"runs": 3}),
    Benchmark(
        "augment_throughput",
        {"contacts": 50, "model_latency": 0.3},
        {"contacts": 3, "model_latency": 0.05, "concurrency": 3},
    ),
    Benchmark("mcp_latency", {"runs": 50}, {"runs": 2}),
    Benchmark("face_analysis", {"runs": 20}, {"runs": 1}),
    Benchmark("scale", {"others": 10_000, "runs": 15}, {"others": 60, "runs": 1}),
)


def machine() -> str:
    """One line about where the numbers were measured."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                model,
            )
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def quiet_logs() -> None:
    """Keep the functions' JSON logs (warnings and worse only) on stderr, the table on stdout."""
    from shared.platform.logging import CloudJsonFormatter, configure_logging

    configure_logging(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and isinstance(
            handler.formatter, CloudJsonFormatter
        ):
            handler.setStream(sys.stderr)
            handler.setLevel(logging.WARNING)  # werkzeug's logger is set to INFO on its own


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smallest sizes: a smoke run")
    parser.add_argument(
        "--only", nargs="+", choices=[b.name for b in BENCHMARKS], help="run only these modules"
    )
    args = parser.parse_args()
    quiet_logs()
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    rows: list[Row] = []
    started = time.monotonic()
    for benchmark in chosen:
        module = importlib.import_module(f"bench.{benchmark.name}")
        print(f"running {benchmark.name}...", file=sys.stderr, flush=True)
        with isolated():
            rows.extend(module.measure(**(benchmark.quick if args.quick else benchmark.full)))
    minutes = (time.monotonic() - started) / 60
    mode = "quick (smoke) run" if args.quick else "full run"
    heading = f"bench/run, {mode} in {minutes:.1f} min on {machine()}"
    print(table(rows, heading=heading))


if __name__ == "__main__":
    main()
