"""Cold start of a function against a bare functions-framework function, in one run.

Each sample starts `functions-framework` in a fresh process and times from
spawn until the first HTTP answer to a request the function serves (any
status). The two targets alternate so machine noise hits both alike.

    .venv/bin/python bench/cold_start.py [--function providers] [--path /providers] [--runs 7]
        [--baseline bench/bare_function.py:bare]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.emulators import free_port
from devstack.functions_index import ROOT, deployed_functions


def cold_start(target: str, source: Path, path: str) -> float:
    port = free_port()
    started = time.perf_counter()
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
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.005)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--function", default="providers")
    parser.add_argument("--path", default="/providers")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", default="bench/bare_function.py:bare")
    args = parser.parse_args()
    spec = deployed_functions()[args.function]
    baseline_file, baseline_target = args.baseline.split(":")
    bare = ROOT / baseline_file
    ours, baseline = [], []
    for _ in range(args.runs):
        ours.append(cold_start(spec.entry_point, spec.source / "main.py", args.path))
        baseline.append(cold_start(baseline_target, bare, "/"))
    ours_median, bare_median = statistics.median(ours), statistics.median(baseline)
    print(f"{args.function}: median {ours_median * 1000:.0f} ms over {args.runs} runs")
    print(f"baseline {args.baseline}: median {bare_median * 1000:.0f} ms")
    print(f"ratio: {ours_median / bare_median:.2f}x")


if __name__ == "__main__":
    main()
