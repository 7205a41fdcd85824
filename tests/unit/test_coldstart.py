"""Garbage collection is held from an entry point's build to the end of its first call."""

from __future__ import annotations

import gc
import subprocess
import sys

from deploy.manifest import ROOT
from devstack.functions_index import deployed_functions, load_entry_point

PROBE = f"""
import gc, sys
sys.path.insert(0, {str(ROOT)!r})
from shared.platform import coldstart

def fails():
    raise RuntimeError("first call fails")

first = coldstart.entry_point(fails)
second = coldstart.entry_point(lambda: "served")
print(gc.isenabled())
try:
    first()
except RuntimeError:
    pass
print(gc.isenabled(), gc.get_freeze_count() > 0)
third = coldstart.entry_point(lambda: "served")
print(gc.isenabled(), second(), third())
"""


def test_the_hold_ends_when_the_first_call_raises_and_happens_once_per_process():
    printed = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()

    assert printed == ["False", "True", "True", "True", "served", "served"]


def test_a_test_session_collects_garbage_after_building_entry_points():
    load_entry_point(deployed_functions()["meta"])

    assert gc.isenabled()
