"""The sandbox runner: results, failures as errors, and escape attempts contained.

These tests drive the real template process (no emulators needed), in both
isolation modes: `root` (namespaces and an unprivileged uid) and `userns`
(what a non-root host gets, as production runs it: the runner in a process
that has dropped to an unprivileged uid, each run in a user namespace, a
read-only file system, no capabilities; see `sandbox_hosts`). Running both
here needs a root host; without root they are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.agents.sandbox.runner import Limits, Runner, run_tree
from tests.integration.sandbox_hosts import host

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs a root host")

LIMITS = Limits(
    cpuSeconds=3,
    memoryBytes=512 * 1024 * 1024,
    fileBytes=1024 * 1024,
    openFiles=64,
    outputBytes=64 * 1024,
    resultBytes=256 * 1024,
    wallSeconds=5,
    maxProcesses=8,
    maxTasks=32,
    diskBytes=16 * 1024 * 1024,
)
CONTEXT = {"platformUrl": "http://127.0.0.1:9", "token": "run-token", "agentName": "probe"}


@pytest.fixture(scope="module", params=["root", "userns"])
def runner(request: pytest.FixtureRequest) -> Iterator[Runner]:
    with host(request.param) as instance:
        yield instance


def run(runner: Runner, code: str, input_dict: Any = None, **limits: Any) -> dict[str, Any]:
    chosen = Limits(**{**LIMITS.__dict__, **limits})
    events = list(runner.run(code, input_dict or {}, {}, CONTEXT, chosen))
    assert "done" in events[-1]
    done: dict[str, Any] = events[-1]["done"]
    done["trace"] = [e["trace"] for e in events[:-1]]
    return done


def test_result_and_stdout_come_back(runner):
    code = (
        "async def run(input_dict, tools):\n"
        "    print('hi')\n"
        "    return {'n': input_dict['n'] * 2}\n"
    )

    done = run(runner, code, {"n": 21})

    assert done["outcome"] == "success"
    assert done["result"] == {"n": 42}
    assert "".join(t["text"] for t in done["trace"] if t["type"] == "stdout") == "hi\n"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("def run(:\n", "SyntaxError"),
        ("async def run(input_dict, tools):\n    raise KeyError('boom')\n", "KeyError: 'boom'"),
        ("x = 1\n", "async def run(input_dict, tools)"),
        ("async def run(input_dict, tools):\n    return {1, 2}\n", "Result is not JSON"),
        ("async def run(input_dict, tools):\n    return float('nan')\n", "Result is not JSON"),
        ("import sys\nasync def run(input_dict, tools):\n    sys.exit(3)\n", "SystemExit"),
    ],
)
def test_user_failures_are_errors(runner, code, expected):
    done = run(runner, code)

    assert done["outcome"] == "error"
    assert expected in done["error"]
    assert "template.py" not in done["error"]


def test_traceback_shows_only_agent_frames(runner):
    code = (
        "def helper():\n    return 1 / 0\n\n"
        "async def run(input_dict, tools):\n    return helper()\n"
    )

    done = run(runner, code)

    assert 'File "<agent>", line 2, in helper' in done["error"]
    assert "ZeroDivisionError" in done["error"]
    assert "sandbox" not in done["error"]


def test_infinite_loop_is_stopped(runner):
    done = run(runner, "async def run(input_dict, tools):\n    while True:\n        pass\n")

    assert done["outcome"] == "error"
    assert "CPU time limit exceeded" in done["error"] or "Timed out" in done["error"]


def test_sleeping_past_the_wall_clock_times_out(runner):
    code = "import time\nasync def run(input_dict, tools):\n    time.sleep(30)\n"

    done = run(runner, code, wallSeconds=1)

    assert done == {**done, "outcome": "error", "error": "Timed out after 1 seconds"}


def test_fork_bomb_is_contained_and_killed(runner):
    code = (
        "import os, time\n"
        "async def run(input_dict, tools):\n"
        "    while True:\n"
        "        try:\n"
        "            if os.fork() == 0:\n"
        "                os.setsid()\n"
        "                time.sleep(60)\n"
        "        except OSError:\n"
        "            time.sleep(0.01)\n"
    )

    done = run(runner, code)

    assert done["outcome"] == "error"
    assert "Process limit exceeded" in done["error"]
    assert run_tree(runner.template_pid) == {runner.template_pid}


def test_four_gigabytes_do_not_fit(runner):
    done = run(runner, "async def run(input_dict, tools):\n    return len(bytearray(4 << 30))\n")

    assert done["outcome"] == "error"
    assert "MemoryError" in done["error"]


def test_environment_of_the_host_is_out_of_reach(runner):
    os.environ["SANDBOX_TEST_SECRET"] = "s3cret-value"
    code = (
        "import os\n"
        "async def run(input_dict, tools):\n"
        "    seen = {'env': dict(os.environ)}\n"
        "    for pid in (input_dict['host'], os.getppid(), 1):\n"
        "        try:\n"
        "            seen[str(pid)] = open(f'/proc/{pid}/environ').read()\n"
        "        except OSError as exc:\n"
        "            seen[str(pid)] = type(exc).__name__\n"
        "    return seen\n"
    )
    try:
        done = run(runner, code, {"host": os.getpid()})
    finally:
        del os.environ["SANDBOX_TEST_SECRET"]

    assert done["outcome"] == "success"
    assert done["result"]["env"] == {}
    assert "s3cret-value" not in str(done["result"])
    assert done["result"][str(os.getpid())] in ("PermissionError", "FileNotFoundError")


def test_another_runs_files_are_gone_and_unlistable(runner):
    write = (
        "import os\n"
        "async def run(input_dict, tools):\n"
        "    open('secret.txt', 'w').write('mine')\n"
        "    return os.path.realpath('secret.txt')\n"
    )
    first = run(runner, write)
    read = (
        "import os\n"
        "async def run(input_dict, tools):\n"
        "    out = {'listing': sorted(os.listdir('.'))}\n"
        "    for path in (input_dict['path'], str(input_dict['root'])):\n"
        "        try:\n"
        "            is_dir = path == input_dict['root']\n"
        "            out[path] = os.listdir(path) if is_dir else open(path).read()\n"
        "        except OSError as exc:\n"
        "            out[path] = type(exc).__name__\n"
        "    return out\n"
    )

    second = run(runner, read, {"path": first["result"], "root": str(runner.root)})

    assert first["outcome"] == "success"
    assert "secret.txt" not in second["result"]["listing"]
    assert second["result"][first["result"]] in ("FileNotFoundError", "PermissionError")
    assert second["result"][str(runner.root)] in ("FileNotFoundError", "PermissionError")
    assert not list(runner.root.glob("run-*"))


def test_writing_outside_the_working_directory_is_refused(runner):
    marker = f"escape-{uuid.uuid4().hex}"
    shared_dirs = ["/tmp", "/var/tmp"]  # noqa: S108 - the point is that runs cannot write there
    targets = [f"/work/{marker}", f"../{marker}"] + [f"{d}/{marker}" for d in shared_dirs]
    code = (
        "async def run(input_dict, tools):\n"
        "    out = {}\n"
        "    for path in input_dict['targets']:\n"
        "        try:\n"
        "            open(path, 'w').write('x')\n"
        "            out[path] = 'written'\n"
        "        except OSError as exc:\n"
        "            out[path] = type(exc).__name__\n"
        "    return out\n"
    )

    done = run(runner, code, {"targets": targets})

    assert done["outcome"] == "success"
    assert done["result"][f"/work/{marker}"] in ("PermissionError", "OSError")
    for path in ["/work", str(runner.root), *shared_dirs]:
        assert not (Path(path) / marker).exists()


def test_a_hundred_megabyte_print_is_cut_off(runner):
    code = "async def run(input_dict, tools):\n    print('x' * (100 * 1024 * 1024))\n    return 1\n"

    done = run(runner, code, memoryBytes=1024 * 1024 * 1024)

    assert done["outcome"] == "error"
    assert done["error"] == "Output limit exceeded"
    assert sum(len(t.get("text", "")) for t in done["trace"]) <= LIMITS.outputBytes


def test_raw_writes_to_stdout_are_discarded(runner):
    code = (
        "import os\n"
        "async def run(input_dict, tools):\n    os.write(1, b'x' * 1000000)\n    return 'ok'\n"
    )

    done = run(runner, code)

    assert done["outcome"] == "success"
    assert done["result"] == "ok"


def test_metadata_server_is_unreachable(runner):
    code = (
        "import socket\n"
        "async def run(input_dict, tools):\n"
        "    out = {}\n"
        "    try:\n"
        "        socket.create_connection(('169.254.169.254', 80), timeout=2)\n"
        "        out['socket'] = 'connected'\n"
        "    except OSError as exc:\n"
        "        out['socket'] = type(exc).__name__\n"
        "    response = await http_client.get(\n"
        "        'http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token',\n"
        "        headers={'Metadata-Flavor': 'Google'})\n"
        "    out['http'] = [response.status_code, response.json()['detail']]\n"
        "    return out\n"
    )

    done = run(runner, code)

    assert done["outcome"] == "success"
    assert done["result"]["socket"] in ("OSError", "TimeoutError")
    assert done["result"]["http"][0] == 403
    assert "Egress refused" in done["result"]["http"][1]


def test_processes_are_gone_after_the_run(runner):
    code = (
        "import subprocess, sys\n"
        "async def run(input_dict, tools):\n"
        "    subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        "    return 'left a child behind'\n"
    )

    done = run(runner, code)

    assert done["outcome"] == "success"
    assert run_tree(runner.template_pid) == {runner.template_pid}


def test_run_tree_of_a_missing_process_is_empty():
    assert run_tree(2**22 + 12345) == set()


def test_a_concurrent_runs_files_are_out_of_reach(runner):
    import threading
    import time

    writer = (
        "import time\n"
        "async def run(input_dict, tools):\n"
        "    open('secret.txt', 'w').write('mine')\n"
        "    time.sleep(2)\n"
        "    return 'done'\n"
    )
    first: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: first.update(run(runner, writer)))
    thread.start()
    deadline = time.monotonic() + 5
    while not list(runner.root.glob("run-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    [run_dir] = runner.root.glob("run-*")
    host_path = str(run_dir / "secret.txt")
    # The file lives in the first run's own tmpfs: not even the host's directory holds it.
    assert list(run_dir.iterdir()) == []
    reader = (
        "async def run(input_dict, tools):\n"
        "    out = {}\n"
        "    for path in (input_dict['path'], 'secret.txt', '/tmp/secret.txt'):\n"
        "        try:\n"
        "            out[path] = open(path).read()\n"
        "        except OSError as exc:\n"
        "            out[path] = type(exc).__name__\n"
        "    return out\n"
    )

    second = run(runner, reader, {"path": host_path})
    thread.join()

    assert first["result"] == "done"
    assert second["outcome"] == "success"
    assert set(second["result"].values()) == {"FileNotFoundError"}


def test_other_processes_are_invisible_and_out_of_signal_reach(runner):
    code = (
        "import os, signal\n"
        "async def run(input_dict, tools):\n"
        "    try:\n"
        "        os.kill(input_dict['host'], signal.SIGTERM)\n"
        "        signalled = 'sent'\n"
        "    except OSError as exc:\n"
        "        signalled = type(exc).__name__\n"
        "    pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "    return {'signalled': signalled, 'pids': pids, 'me': os.getpid()}\n"
    )

    done = run(runner, code, {"host": os.getpid()})

    assert done["outcome"] == "success"
    assert done["result"] == {"signalled": "ProcessLookupError", "pids": [1], "me": 1}
