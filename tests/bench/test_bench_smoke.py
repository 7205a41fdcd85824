"""Every benchmark still runs: `bench/run --quick --only NAME` per module, no timing checked.

Each module starts what it needs itself (its own emulator stack on free
ports), in a child process with the environment the session started with,
so the session's own stack is neither used nor disturbed.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest

from bench.__main__ import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = dict(os.environ)  # as collected: before any fixture points it at a stack


@pytest.mark.parametrize("name", [benchmark.name for benchmark in BENCHMARKS])
def test_benchmark_runs_and_reports_ratios(name):
    finished = subprocess.run(
        [str(ROOT / "bench" / "run"), "--quick", "--only", name],
        cwd=ROOT,
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr[-4000:]
    lines = finished.stdout.strip().splitlines()
    assert lines[0].startswith("bench/run, quick (smoke) run in ")
    header, _rule, *rows = [line for line in lines if line.startswith("|")]
    assert header.split("|")[1].strip() == "figure"
    assert rows
    for row in rows:
        figure, ours, baseline, ratio, baseline_is = (cell.strip() for cell in row.split("|")[1:-1])
        assert figure and baseline_is
        assert float(ours.split()[0]) > 0 and float(baseline.split()[0]) > 0, row
        assert math.isfinite(float(ratio.removesuffix("x"))), row
