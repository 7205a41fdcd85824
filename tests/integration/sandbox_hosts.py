"""Sandbox hosts for tests, in both isolation modes, the production one as production runs it.

`root` mode is what a root host gets: the runner lives in the test process
(which runs as root here). `userns` mode is what production gets (the host
is not root): the runner lives in its own process that has dropped to an
unprivileged uid (`setpriv`), so its runs are built by an unprivileged
template in a user namespace, exactly as on a non-root host. That process
serves runs over a local TCP socket, one connection a run: a JSON request
line in, the runner's events as JSON lines out.

    python -m tests.integration.sandbox_hosts  # the unprivileged side (started by `host`)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from shared.agents.sandbox.runner import Limits, Runner

UNPRIVILEGED = "65534"
_REPO = Path(__file__).resolve().parents[2]


class UnprivilegedRunner:
    """A `Runner` in a process of its own that runs as an unprivileged uid (`userns` mode).

    Args:
        extra_origins: As for `Runner`.
    """

    isolation = "userns"

    def __init__(self, extra_origins: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "PYTHONPATH": str(_REPO), "PYTHONDONTWRITEBYTECODE": "1"}
        command = [
            "setpriv",
            f"--reuid={UNPRIVILEGED}",
            f"--regid={UNPRIVILEGED}",
            "--clear-groups",
            sys.executable,
            "-m",
            "tests.integration.sandbox_hosts",
            json.dumps(list(extra_origins)),
        ]
        self._process = subprocess.Popen(
            command, cwd=_REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            raise RuntimeError("the unprivileged sandbox host did not start")
        started = json.loads(line)
        self.port = int(started["port"])
        self.root = Path(started["root"])
        self.template_pid = int(started["templatePid"])

    def run(
        self,
        code: str,
        input_dict: Any,
        tools: Any,
        context: dict[str, Any],
        limits: Limits | None = None,
    ) -> Iterator[dict[str, Any]]:
        """As `Runner.run`, in the unprivileged host."""
        request = {
            "code": code,
            "inputDict": input_dict,
            "tools": tools,
            "context": context,
            "limits": asdict(limits) if limits else None,
        }
        with socket.create_connection(("127.0.0.1", self.port)) as conn:
            conn.sendall(json.dumps(request).encode() + b"\n")
            with conn.makefile("rb") as answer:
                for line in answer:
                    yield json.loads(line)

    def close(self) -> None:
        """Stop the host (closing its stdin makes it close its runner and leave)."""
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextlib.contextmanager
def host(isolation: str, extra_origins: tuple[str, ...] = ()) -> Iterator[Any]:
    """A runner in `isolation` mode (`root` in this process, `userns` unprivileged), then closed."""
    runner: Runner | UnprivilegedRunner
    if isolation == "userns":
        runner = UnprivilegedRunner(extra_origins)
    else:
        runner = Runner(extra_origins=extra_origins, isolation=isolation)
    try:
        yield runner
    finally:
        runner.close()


def _serve(extra_origins: tuple[str, ...]) -> None:
    runner = Runner(extra_origins=extra_origins, isolation="userns")
    warm = "async def run(input_dict, tools):\n    return 1\n"
    list(runner.run(warm, {}, {}, {"platformUrl": "http://127.0.0.1:9", "token": "t"}))

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request = json.loads(self.rfile.readline())
            limits = Limits(**request["limits"]) if request["limits"] else None
            events = runner.run(
                request["code"], request["inputDict"], request["tools"], request["context"], limits
            )
            for event in events:
                self.wfile.write(json.dumps(event, default=str).encode() + b"\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    started = {
        "port": server.server_address[1],
        "root": str(runner.root),
        "templatePid": runner.template_pid,
    }
    sys.stdout.write(json.dumps(started) + "\n")
    sys.stdout.flush()
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()
    runner.close()


if __name__ == "__main__":
    _serve(tuple(json.loads(sys.argv[1])))
