"""The host side of the sandbox: the template process, supervision, clean-up.

One `Runner` per process starts the template (`template.py`, a fresh
interpreter with an empty environment that has imported the agent runtime)
and the egress proxy. Each run connects to the template, which forks a
child for it; the runner then watches that child:

- wall clock: past `wall_seconds` the run is killed;
- processes: the run's process tree (its descendants, and anything in its
  session) is counted every few milliseconds and killed when it grows past
  `max_processes` (RLIMIT_NPROC is per uid and not enforced under gVisor);
- output: at most `output_bytes + result_bytes` are read from the run;
- end: the whole tree and its process group are killed, and the temporary
  working directory is removed.

User-code failures come back as `{"outcome": "error", "error": ...}`; only a
broken host (no template) raises.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.agents.sandbox.egress import EgressProxy, origin
from shared.platform.config import get_settings
from shared.platform.errors import Unavailable

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
_POLL_SECONDS = 0.02
_KILL_ROUNDS = 200
_LINE_MARGIN = 64 * 1024
_PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run."""

    cpuSeconds: int  # noqa: N815 - the wire names of the template protocol
    memoryBytes: int  # noqa: N815
    fileBytes: int  # noqa: N815
    openFiles: int  # noqa: N815
    outputBytes: int  # noqa: N815
    resultBytes: int  # noqa: N815
    wallSeconds: float  # noqa: N815
    maxProcesses: int  # noqa: N815

    @classmethod
    def from_settings(cls) -> Limits:
        """The configured limits."""
        s = get_settings()
        return cls(
            cpuSeconds=s.sandbox_cpu_seconds,
            memoryBytes=s.sandbox_memory_mb * 1024 * 1024,
            fileBytes=s.sandbox_file_mb * 1024 * 1024,
            openFiles=s.sandbox_open_files,
            outputBytes=s.sandbox_output_bytes,
            resultBytes=s.sandbox_result_bytes,
            wallSeconds=s.sandbox_wall_seconds,
            maxProcesses=s.sandbox_max_processes,
        )


def _process_table() -> list[tuple[int, int, int, bool]]:
    """(pid, ppid, session, alive) of every process; zombies are not alive."""
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        table.append((int(entry), int(fields[1]), int(fields[3]), fields[0] not in (b"Z", b"X")))
    return table


def run_tree(root: int) -> set[int]:
    """The live processes of a run: the root, its descendants and its session."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    members = set()
    for pid, ppid, session, _ in table:
        children.setdefault(ppid, []).append(pid)
        if session == root:
            members.add(pid)
    stack = [root] if any(pid == root for pid, _, _, _ in table) else []
    while stack:
        pid = stack.pop()
        members.add(pid)
        stack.extend(children.get(pid, []))
    alive = {pid for pid, _, _, live in table if live}
    return members & alive


def kill_tree(root: int) -> None:
    """Kill every process of a run's tree, the root last.

    The root is stopped first: it cannot fork any more, and as the run's
    child subreaper it keeps every orphan of the run in its tree until the
    rest is dead.
    """
    with contextlib.suppress(OSError):
        os.kill(root, signal.SIGSTOP)
    for _ in range(_KILL_ROUNDS):
        others = run_tree(root) - {root}
        if not others:
            break
        for pid in others:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)
    else:
        logger.error("sandbox run tree survived killing", extra={"root": root})
    with contextlib.suppress(OSError):
        os.killpg(root, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(root, signal.SIGKILL)
    for _ in range(_KILL_ROUNDS):
        if not run_tree(root):
            return
        time.sleep(0.001)


class Runner:
    """The template process and egress proxy of this host process.

    Args:
        extra_origins: Non-public origins runs may reach besides the configured ones.
        isolation: `root`, `userns` or `none` (default: `SANDBOX_ISOLATION`).
    """

    def __init__(self, extra_origins: tuple[str, ...] = (), isolation: str | None = None) -> None:
        settings = get_settings()
        self._lock = threading.Lock()
        self._template: subprocess.Popen[bytes] | None = None
        # Each runner owns its directory: closing one never removes another's sockets.
        self.root = Path(settings.sandbox_work_root or tempfile.gettempdir()) / (
            f"sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        )
        mode = isolation or settings.sandbox_isolation
        if mode == "auto":
            mode = "root" if os.geteuid() == 0 else "userns"
        self.isolation = mode
        self._proxy: EgressProxy | None = None
        self._extra_origins = extra_origins

    @property
    def template_socket(self) -> str:
        """Where the template listens."""
        return str(self.root / "template.sock")

    @property
    def egress_socket(self) -> str:
        """Where the egress proxy listens."""
        return str(self.root / "egress.sock")

    def _ensure_started(self) -> None:
        with self._lock:
            if self._template is not None and self._template.poll() is None:
                return
            if self.isolation == "none" and get_settings().is_production:
                raise Unavailable("The sandbox refuses to run unisolated in production")
            if self.isolation == "userns":
                # Runs keep this process's uid: its /proc files must not be readable by them.
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
            self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
            self.root.chmod(0o711)
            if self._proxy is None:
                settings = get_settings()
                urls = [
                    settings.platform_url,
                    *settings.sandbox_egress_allowlist,
                    *self._extra_origins,
                ]
                allowed = frozenset(origin(url) for url in urls)
                self._proxy = EgressProxy(self.egress_socket, allowed)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.template_socket)
            template = subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [
                    sys.executable,
                    "-I",
                    str(_HERE / "template.py"),
                    str(_HERE / "compat"),
                    self.template_socket,
                ],
                env={},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                cwd=self.root,
            )
            assert template.stdout is not None
            if template.stdout.readline().strip() != b"ready":
                template.kill()
                raise Unavailable("The sandbox could not start")
            self._template = template

    @property
    def template_pid(self) -> int | None:
        """The template process, when running."""
        return self._template.pid if self._template is not None else None

    def close(self) -> None:
        """Stop the template, anything left of its runs, and the proxy (tests and shutdown)."""
        with self._lock:
            if self._template is not None:
                kill_tree(self._template.pid)
                self._template.wait()
                self._template = None
            if self._proxy is not None:
                self._proxy.close()
                self._proxy = None
            shutil.rmtree(self.root, ignore_errors=True)

    def _connect(self) -> socket.socket:
        for attempt in range(2):
            self._ensure_started()
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(self.template_socket)
            except OSError:
                conn.close()
                if attempt:
                    raise Unavailable("The sandbox is not reachable") from None
                continue
            return conn
        raise Unavailable("The sandbox is not reachable")

    def run(
        self,
        code: str,
        input_dict: Any,
        tools: Any,
        context: dict[str, Any],
        limits: Limits | None = None,
        *,
        heartbeat_seconds: float | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Run agent code once, yielding trace events and finally the outcome.

        Args:
            code: Source defining `async def run(input_dict, tools)`.
            input_dict: The `input_dict` argument.
            tools: The `tools` argument.
            context: For the run's runtime: `platformUrl`, `token`, `agentName`,
                `contextWindows`, `llmSettings` (the egress socket is added here).
            limits: Resource limits (the configured ones by default).
            heartbeat_seconds: When set, an empty event `{}` after each such
                silence, so a consumer that went away is noticed (closing this
                generator kills the run's whole tree).

        Yields:
            `{"trace": {...}}` events as they happen, then one `{"done": {...}}`
            with `outcome` (`success` or `error`), `result`, `error`, `opsLog`.

        Raises:
            Unavailable: The template could not be started or reached.
        """
        limits = limits or Limits.from_settings()
        conn = self._connect()
        workdir = tempfile.mkdtemp(prefix="run-", dir=self.root)
        request = {
            "code": code,
            "inputDict": input_dict,
            "tools": tools,
            "limits": asdict(limits),
            "workdir": workdir,
            "uid": get_settings().sandbox_uid,
            "isolation": self.isolation,
            "context": {**context, "egressSocket": self.egress_socket},
        }
        root: int | None = None
        started = time.monotonic()
        outcome = "abandoned"
        try:
            conn.sendall(json.dumps(request).encode() + b"\n")
            watch = _Watch(conn, limits, heartbeat_seconds)
            for message in watch.messages():
                if not message:
                    yield {}
                elif "pid" in message and root is None:
                    root = int(message["pid"])
                    watch.root = root
                elif "trace" in message:
                    yield {"trace": message["trace"]}
                elif "done" in message:
                    done = _outcome(message["done"])
                    outcome = done["outcome"]
                    yield {"done": done}
                    return
            outcome = "killed"
            yield {"done": {"outcome": "error", "error": watch.failure, "opsLog": []}}
        finally:
            if root is not None:
                kill_tree(root)
            conn.close()
            shutil.rmtree(workdir, ignore_errors=True)
            elapsed = round((time.monotonic() - started) * 1000, 1)
            logger.info(
                "sandbox run %s", outcome, extra={"outcome": outcome, "durationMs": elapsed}
            )


def _outcome(done: Any) -> dict[str, Any]:
    if not isinstance(done, dict) or done.get("outcome") not in ("success", "error"):
        return {"outcome": "error", "error": "The run returned no outcome", "opsLog": []}
    ops = done.get("opsLog")
    return {
        "outcome": done["outcome"],
        "result": done.get("result"),
        "error": done.get("error"),
        "opsLog": ops if isinstance(ops, list) else [],
    }


class _Watch:
    """Reads a run's messages while enforcing its wall clock, process and output limits."""

    def __init__(
        self, conn: socket.socket, limits: Limits, heartbeat_seconds: float | None = None
    ) -> None:
        self.conn = conn
        self.limits = limits
        self.heartbeat_seconds = heartbeat_seconds
        self.root: int | None = None
        self.failure = "The run ended unexpectedly (killed by a resource limit)"
        self._deadline = time.monotonic() + limits.wallSeconds
        self._budget = limits.outputBytes + limits.resultBytes + _LINE_MARGIN

    def messages(self) -> Iterator[dict[str, Any]]:
        """The run's messages, and `{}` after each `heartbeat_seconds` of silence."""
        buffer = b""
        quiet_since = time.monotonic()
        while True:
            if time.monotonic() > self._deadline:
                self.failure = f"Timed out after {self.limits.wallSeconds:g} seconds"
                return
            if self.root is not None and len(run_tree(self.root)) > self.limits.maxProcesses:
                self.failure = f"Process limit exceeded ({self.limits.maxProcesses})"
                return
            ready, _, _ = select.select([self.conn], [], [], _POLL_SECONDS)
            if not ready:
                if (
                    self.heartbeat_seconds
                    and time.monotonic() - quiet_since >= self.heartbeat_seconds
                ):
                    quiet_since = time.monotonic()
                    yield {}
                continue
            quiet_since = time.monotonic()
            chunk = self.conn.recv(65536)
            if not chunk:
                return
            self._budget -= len(chunk)
            if self._budget < 0:
                self.failure = "Output limit exceeded"
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    message = json.loads(line)
                except ValueError:
                    self.failure = "The run sent a malformed message"
                    return
                if isinstance(message, dict):
                    yield message


_runners: dict[str, Runner] = {}
_runners_lock = threading.Lock()


def get_runner() -> Runner:
    """The process-wide runner (its template starts on first use)."""
    with _runners_lock:
        if "runner" not in _runners:
            _runners["runner"] = Runner()
            atexit.register(_runners["runner"].close)
        return _runners["runner"]
