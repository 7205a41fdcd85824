"""Escapes from the sandbox, one test per class, tried as agent code would try them.

Classes: URL parser differentials and address forms that reach a server
other than the allowed origin; the platform reached outside its callback
paths; several processes (or many threads) together over the run's budget;
many files over the run's disk; host paths writable from a run, and
anything a run leaves behind for the next one. Each runs in both isolation
modes where it applies (`userns` as production runs it: an unprivileged
host, see `sandbox_hosts`).

Servers on 127.0.0.1: the platform (its origin is `PLATFORM_URL`), an
allowlisted origin, and a secret server that stands for the emulators,
which no run may ever reach.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest

from shared.agents.sandbox.runner import Limits, Runner, run_tree
from shared.platform.config import get_settings
from tests.fakes.server import serving
from tests.integration.sandbox_hosts import UNPRIVILEGED, host

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs a root host")

LIMITS = Limits(
    cpuSeconds=5,
    memoryBytes=256 * 1024 * 1024,
    fileBytes=1024 * 1024,
    openFiles=64,
    outputBytes=64 * 1024,
    resultBytes=256 * 1024,
    wallSeconds=8,
    maxProcesses=8,
    maxTasks=32,
    diskBytes=16 * 1024 * 1024,
)

# Sends each (method, target) straight to the egress socket, as hostile code would,
# and returns the status line's code (or the error) of each.
RAW_EGRESS = """
import socket

async def run(input_dict, tools):
    out = []
    for method, target in input_dict['targets']:
        conn = socket.socket(socket.AF_UNIX)
        conn.connect('/tmp/.egress.sock')
        head = (f'{method} / HTTP/1.1\\r\\nHost: egress\\r\\nX-Sandbox-Target: {target}\\r\\n'
                'Content-Length: 0\\r\\nConnection: close\\r\\n\\r\\n')
        conn.sendall(head.encode('latin-1'))
        data = b''
        while chunk := conn.recv(65536):
            data += chunk
        conn.close()
        out.append(int(data.split(b' ', 2)[1]) if data else 0)
    return out
"""


class Recorder:
    """A server that answers 200 to everything and remembers what it was asked."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def app(self) -> flask.Flask:
        app = flask.Flask(__name__)

        @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
        @app.route("/<path:path>", methods=["GET", "POST"])
        def anything(path: str) -> flask.Response:
            self.seen.append((flask.request.method, flask.request.path))
            if path == "redirect":
                return flask.redirect(flask.request.args["to"], code=302)
            return flask.jsonify({"path": flask.request.path})

        return app


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    platform, allowed, secret = Recorder(), Recorder(), Recorder()
    saved = os.environ.get("PLATFORM_URL")
    with (
        serving(platform.app()) as platform_url,
        serving(allowed.app()) as allowed_url,
        serving(secret.app()) as secret_url,
    ):
        os.environ["PLATFORM_URL"] = platform_url
        get_settings.cache_clear()
        try:
            yield {
                "platform": (platform_url, platform),
                "allowed": (allowed_url, allowed),
                "secret": (secret_url, secret),
            }
        finally:
            if saved is None:
                os.environ.pop("PLATFORM_URL", None)
            else:
                os.environ["PLATFORM_URL"] = saved
            get_settings.cache_clear()


@pytest.fixture(scope="module", params=["root", "userns"])
def runner(request: pytest.FixtureRequest, servers: dict[str, Any]) -> Iterator[Runner]:
    with host(request.param, extra_origins=(servers["allowed"][0],)) as instance:
        yield instance


def run(runner: Runner, code: str, input_dict: Any = None, **limits: Any) -> dict[str, Any]:
    chosen = Limits(**{**LIMITS.__dict__, **limits})
    context = {"platformUrl": get_settings().platform_url, "token": "run-token", "agentName": "x"}
    events = list(runner.run(code, input_dict or {}, {}, context, chosen))
    done: dict[str, Any] = events[-1]["done"]
    return done


def port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def test_url_parser_differentials_and_address_forms_reach_no_other_server(runner, servers):
    allowed, secret = port(servers["allowed"][0]), port(servers["secret"][0])
    platform = port(servers["platform"][0])
    secret_server = servers["secret"][1]
    secret_server.seen.clear()
    tricks = [
        f"http://127.0.0.1:{secret}\\@127.0.0.1:{allowed}/",
        f"http://127.0.0.1:{secret}\\\\@127.0.0.1:{allowed}/",
        f"http://127.0.0.1:{allowed}@127.0.0.1:{secret}/",
        f"http://x:y@127.0.0.1:{allowed}/",
        f"http://127.0.0.1:{secret}#@127.0.0.1:{allowed}/",
        f"http://127.0.0.1:{secret}?@127.0.0.1:{allowed}/",
        f"http://127.0.0.1:{secret}%2f@127.0.0.1:{allowed}/",
        f"http://127.0.0.1:{secret}\t@127.0.0.1:{allowed}/",
        f"http://127.0.0.1:{platform}\\@127.0.0.1:{allowed}/users/me",
        f"http://127.0.0.1:0{allowed}/",
        f"http://127.0.0.1:{allowed}:{secret}/",
        f"http://127.0.0.1:/{secret}",
        f"http://[::127.0.0.1]:{secret}/",
        f"http://[::ffff:127.0.0.1]:{secret}/",
        f"http://[::ffff:7f00:1]:{secret}/",
        f"http://[64:ff9b::127.0.0.1]:{secret}/",
        f"http://[2002:7f00:1::]:{secret}/",
        f"http://[::1]:{secret}/",
        f"http://[fe80::1%25lo]:{secret}/",
        f"http://2130706433:{secret}/",
        f"http://0x7f.1:{secret}/",
        f"http://0x7f000001:{secret}/",
        f"http://127.1:{secret}/",
        f"http://0177.0.0.1:{secret}/",
        f"http://127.0.0.1.:{secret}/",
        f"http://localhost:{secret}/",
        f"http://LOCALHOST.:{secret}/",
        f"http://%31%32%37.0.0.1:{secret}/",
        f"http://127.0.0.1\u3002:{secret}/".encode().decode("latin-1"),
        f"HTTP://127.0.0.1:{secret}/",
        f"http:/127.0.0.1:{secret}/",
        f"http:127.0.0.1:{secret}/",
        f"//127.0.0.1:{secret}/",
        f"ftp://127.0.0.1:{secret}/",
    ]

    done = run(runner, RAW_EGRESS, {"targets": [["GET", t] for t in tricks]})

    assert done["outcome"] == "success", done
    assert dict(zip(tricks, done["result"], strict=True)) == dict.fromkeys(tricks, 403)
    assert secret_server.seen == []


def test_the_platform_is_reached_only_at_its_callback_paths(runner, servers):
    base, platform = servers["platform"]
    platform.seen.clear()
    refused = [
        ["GET", f"{base}/users/me"],
        ["POST", f"{base}/admin/users"],
        ["GET", f"{base}/agents/run-code/llm"],
        ["POST", f"{base}/agents/run-code/llm/../../../users/me"],
        ["POST", f"{base}/agents/run-code/llm/%2e%2e/%2e%2e/%2e%2e/users/me"],
        ["POST", f"{base}/agents/run-code/./llm"],
        ["POST", f"{base}//agents/run-code/llm"],
        ["POST", f"{base}/agents/run-code/llm?x=1"],
        ["POST", f"{base}/agents/run-code/llm%2f..%2f..%2fusers"],
        ["POST", f"{base}/data-store/ops/../../users/me"],
        ["POST", f"{base}/mcp/tools/.."],
        ["POST", f"{base}/"],
    ]
    allowed = [["POST", f"{base}{path}"] for path in ("/agents/run-code/llm", "/mcp/call")]

    done = run(runner, RAW_EGRESS, {"targets": refused + allowed})

    assert done["outcome"] == "success", done
    assert done["result"] == [403] * len(refused) + [200] * len(allowed)
    assert platform.seen == [("POST", "/agents/run-code/llm"), ("POST", "/mcp/call")]


def test_redirects_are_checked_again(runner, servers):
    allowed_url = servers["allowed"][0]
    secret_url, secret = servers["secret"]
    secret.seen.clear()
    code = (
        "async def run(input_dict, tools):\n"
        "    response = await http_client.get(input_dict['url'])\n"
        "    return [response.status_code, response.json()['detail']]\n"
    )

    done = run(runner, code, {"url": f"{allowed_url}/redirect?to={secret_url}/"})

    assert done["outcome"] == "success", done
    assert done["result"][0] == 403
    assert secret.seen == []


FORKS = (
    "import os, time\n"
    "async def run(input_dict, tools):\n"
    "    for _ in range(5):\n"
    "        if os.fork() == 0:\n"
    "            block = b'x' * (100 << 20)\n"
    "            time.sleep(30)\n"
    "            os._exit(0)\n"
    "    time.sleep(30)\n"
    "    return 'all alive'\n"
)
# Anonymous memory files: memory in no process's resident size, on no file system.
MEMFDS = (
    "import os, time\n"
    "async def run(input_dict, tools):\n"
    "    fds = [os.memfd_create(f'm{i}') for i in range(6)]\n"
    "    for fd in fds:\n"
    "        for _ in range(60):\n"
    "            os.write(fd, b'x' * (1 << 20))\n"
    "    time.sleep(30)\n"
    "    return 'all held'\n"
)


@pytest.mark.parametrize("code", [FORKS, MEMFDS], ids=["processes", "memfds"])
def test_memory_together_over_the_budget_is_killed(runner, code):
    # Each process (and file) stays far below the per-process limits; together they are over.
    done = run(runner, code, fileBytes=64 * 1024 * 1024)

    assert done["outcome"] == "error"
    assert done["error"] == "Memory limit exceeded (256 MB for the run)"
    assert run_tree(runner.template_pid) == {runner.template_pid}


def test_threads_count_as_tasks(runner):
    code = (
        "import threading, time\n"
        "async def run(input_dict, tools):\n"
        "    threading.stack_size(256 * 1024)\n"
        "    for _ in range(100):\n"
        "        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "        time.sleep(0.02)\n"
        "    return 'all running'\n"
    )

    done = run(runner, code, memoryBytes=1024 * 1024 * 1024)

    assert done["outcome"] == "error"
    assert done["error"] == "Task limit exceeded (32 processes and threads)"


def test_many_files_stop_at_the_disk_budget(runner):
    # /tmp, /var/tmp and /dev/shm are the run's one tmpfs: the budget covers them together.
    code = (
        "import os\n"
        "async def run(input_dict, tools):\n"
        "    out = {}\n"
        "    for name, where, size, count in (\n"
        "        ('big', '.', 1 << 20, 64),\n"
        "        ('shm', '/dev/shm', 1 << 20, 64),\n"
        "        ('empty', '/var/tmp', 0, 5000),\n"
        "    ):\n"
        "        folder = os.path.join(where, name)\n"
        "        os.mkdir(folder)\n"
        "        written = 0\n"
        "        try:\n"
        "            for i in range(count):\n"
        "                with open(f'{folder}/{i}', 'wb') as f:\n"
        "                    f.write(b'x' * size)\n"
        "                written += 1\n"
        "            out[name] = [written, None]\n"
        "        except OSError as exc:\n"
        "            out[name] = [written, exc.errno]\n"
        "        for entry in os.listdir(folder):\n"
        "            os.unlink(f'{folder}/{entry}')\n"
        "    return out\n"
    )

    done = run(runner, code)

    assert done["outcome"] == "success", done
    for name in ("big", "shm", "empty"):
        assert done["result"][name][1] == 28, name  # ENOSPC
    assert done["result"]["big"][0] <= 16
    assert done["result"]["shm"][0] <= 16


def test_no_host_path_is_writable_and_nothing_survives_the_run(runner):
    marker = f"escape-{uuid.uuid4().hex}"
    candidates = ["/run/lock", "/var/lock", "/run", "/dev/mqueue", "/var/crash", "/var/mail"]
    host_writable = [d for d in candidates if os.path.isdir(d) and os.stat(d).st_mode & 0o002]
    shared = ["/tmp", "/var/tmp", "/dev/shm"]  # noqa: S108 - each run's own tmpfs, in the run
    write = (
        "import ctypes, os\n"
        "async def run(input_dict, tools):\n"
        "    out = {}\n"
        "    for d in input_dict['dirs']:\n"
        "        try:\n"
        "            open(os.path.join(d, input_dict['marker']), 'w').write('x')\n"
        "            out[d] = 'written'\n"
        "        except OSError as exc:\n"
        "            out[d] = type(exc).__name__\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    out['shm'] = libc.shmget(0x5EC2E7, 4096, 0o1666)\n"
        "    out['msg'] = libc.msgget(0x5EC2E7, 0o1666)\n"
        "    return out\n"
    )
    read = (
        "import ctypes, os\n"
        "async def run(input_dict, tools):\n"
        "    out = {d: os.path.exists(os.path.join(d, input_dict['marker']))\n"
        "           for d in input_dict['dirs']}\n"
        "    out['shm'] = ctypes.CDLL(None).shmget(0x5EC2E7, 0, 0)\n"
        "    return out\n"
    )
    dirs = host_writable + shared

    first = run(runner, write, {"dirs": dirs, "marker": marker})
    second = run(runner, read, {"dirs": dirs, "marker": marker})

    assert first["outcome"] == "success", first
    for d in host_writable:
        assert first["result"][d] in ("PermissionError", "OSError"), d
    for d in dirs:
        assert not os.path.exists(os.path.join(d, marker)), d
    assert first["result"]["msg"] == -1
    assert second["outcome"] == "success", second
    assert second["result"] == {**dict.fromkeys(dirs, False), "shm": -1}


@pytest.fixture(params=["root", "userns"])
def runner_outside_tmp(request: pytest.FixtureRequest, servers: dict[str, Any]) -> Iterator[Runner]:
    """A runner whose directory (`SANDBOX_WORK_ROOT`) is not under a temp dir runs shadow."""
    work_root = Path("/run") / f"sandbox-test-{uuid.uuid4().hex}"
    work_root.mkdir(mode=0o700)
    os.chown(work_root, int(UNPRIVILEGED), int(UNPRIVILEGED))
    os.environ["SANDBOX_WORK_ROOT"] = str(work_root)
    get_settings.cache_clear()
    try:
        with host(request.param) as instance:
            yield instance
    finally:
        del os.environ["SANDBOX_WORK_ROOT"]
        get_settings.cache_clear()
        shutil.rmtree(work_root)


def test_the_template_and_the_runners_directory_are_out_of_reach(runner_outside_tmp):
    # The template's socket would start runs as asked, unisolated ones included.
    root = runner_outside_tmp.root
    code = (
        "import os, socket\n"
        "async def run(input_dict, tools):\n"
        "    out = {}\n"
        "    for path in input_dict['sockets']:\n"
        "        conn = socket.socket(socket.AF_UNIX)\n"
        "        try:\n"
        "            conn.connect(path)\n"
        "            out[path] = 'connected'\n"
        "        except OSError as exc:\n"
        "            out[path] = type(exc).__name__\n"
        "    try:\n"
        "        out['listing'] = os.listdir(input_dict['root'])\n"
        "    except OSError as exc:\n"
        "        out['listing'] = type(exc).__name__\n"
        "    return out\n"
    )
    sockets = [str(root / "template.sock"), str(root / "egress.sock")]

    done = run(runner_outside_tmp, code, {"sockets": sockets, "root": str(root)})

    assert done["outcome"] == "success", done
    assert {done["result"][path] for path in sockets} <= {"FileNotFoundError", "PermissionError"}
    assert done["result"]["listing"] in ([], "FileNotFoundError", "PermissionError")


def test_a_run_cannot_loosen_its_ipc_settings_or_make_namespaces(runner):
    # Its own user and IPC namespaces would hold SysV memory outside every budget.
    code = (
        "import ctypes, os\n"
        "async def run(input_dict, tools):\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    out = {}\n"
        "    for name in ('shm_rmid_forced', 'msgmni'):\n"
        "        try:\n"
        "            open(f'/proc/sys/kernel/{name}', 'w').write('32000')\n"
        "            out[name] = 'written'\n"
        "        except OSError as exc:\n"
        "            out[name] = type(exc).__name__\n"
        "    for name, flags in (('user', 0x10000000), ('user+ipc', 0x18000000)):\n"
        "        if os.fork() == 0:\n"
        "            os._exit(0 if libc.unshare(flags) == 0 else 1)\n"
        "        out[name] = os.waitstatus_to_exitcode(os.wait()[1])\n"
        "    return out\n"
    )

    done = run(runner, code)

    assert done["outcome"] == "success", done
    assert done["result"]["shm_rmid_forced"] in ("PermissionError", "OSError")
    assert done["result"]["msgmni"] in ("PermissionError", "OSError")
    assert (done["result"]["user"], done["result"]["user+ipc"]) == (1, 1)


def test_the_egress_proxy_forwards_a_bounded_number_of_requests_at_once(tmp_path):
    import socket
    import threading
    import time

    from shared.agents.sandbox.egress import MAX_CONCURRENT_REQUESTS, EgressProxy, Rules

    app = flask.Flask(__name__)

    @app.route("/slow")
    def slow() -> str:
        time.sleep(1)
        return "ok"

    statuses: list[int] = []

    def fetch(socket_path: str, url: str) -> None:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(socket_path)
            head = f"GET / HTTP/1.1\r\nHost: egress\r\nX-Sandbox-Target: {url}\r\n"
            conn.sendall((head + "Connection: close\r\n\r\n").encode())
            statuses.append(int(conn.makefile("rb").readline().split()[1]))

    with serving(app) as url:
        proxy = EgressProxy(
            str(tmp_path / "egress.sock"), Rules.build("http://127.0.0.1:9", (url,))
        )
        try:
            threads = [
                threading.Thread(target=fetch, args=(proxy.socket_path, f"{url}/slow"))
                for _ in range(MAX_CONCURRENT_REQUESTS + 16)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            proxy.close()

    assert statuses.count(503) >= 16
    assert statuses.count(200) <= MAX_CONCURRENT_REQUESTS
