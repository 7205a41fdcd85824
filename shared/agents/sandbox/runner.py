"""The host side of the sandbox: the template process, supervision, clean-up.

One `Runner` per process starts the template (`template.py`, a fresh
interpreter with an empty environment that has imported the agent runtime)
and the egress proxy. Each run connects to the template, which forks a
child for it; the runner then watches that child:

- one budget for the run's whole process tree (its descendants, and
  anything in its session), read from /proc every 20 ms: past
  `maxProcesses` processes, `maxTasks` tasks (processes and their threads)
  or `memoryBytes` of memory for all processes together (resident memory,
  and when that is over, the proportional share of shared pages, so pages
  a fork shares with the template count once) the run is killed. cgroups
  are not ours to use here and RLIMIT_NPROC is per uid and not enforced
  under gVisor, so the supervisor keeps these; each process also has
  RLIMIT_AS of `memoryBytes` as a second line;
- disk: the run's only writable space is a tmpfs of `diskBytes` in its own
  mount namespace (see `template.py`), gone with the run;
- wall clock: past `wallSeconds` the run is killed;
- output: at most `outputBytes + resultBytes` are read from the run;
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
from typing import Any, NamedTuple

from shared.agents.sandbox.egress import EgressProxy, Rules
from shared.platform.config import get_settings
from shared.platform.errors import Unavailable

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
_POLL_SECONDS = 0.02
_KILL_ROUNDS = 200
_LINE_MARGIN = 64 * 1024
_PR_SET_DUMPABLE = 4
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_PF_EXITING = 0x4  # the kernel's flag for a task inside exit (/proc/PID/stat field 9)


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
    maxTasks: int  # noqa: N815
    diskBytes: int  # noqa: N815

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
            maxTasks=s.sandbox_max_tasks,
            diskBytes=s.sandbox_disk_mb * 1024 * 1024,
        )


class _Process(NamedTuple):
    pid: int
    ppid: int
    session: int
    alive: bool
    threads: int
    resident_pages: int


def _process_table() -> list[_Process]:
    """Every process, from one read of its /proc/PID/stat.

    Zombies and exiting processes (killed, tearing down their namespaces in
    the kernel; they never run user code again) are not alive.
    """
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # os.open/os.read: a third of the cost of open(), and this runs every poll.
            fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
            try:
                fields = os.read(fd, 4096).rsplit(b")", 1)[1].split()
            finally:
                os.close(fd)
        except OSError:
            continue
        table.append(
            _Process(
                pid=int(entry),
                ppid=int(fields[1]),
                session=int(fields[3]),
                alive=fields[0] not in (b"Z", b"X") and not int(fields[6]) & _PF_EXITING,
                threads=int(fields[17]),
                resident_pages=int(fields[21]),
            )
        )
    return table


def _tree(root: int) -> list[_Process]:
    """The live processes of a run: the root, its descendants and its session."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    members = set()
    for process in table:
        children.setdefault(process.ppid, []).append(process.pid)
        if process.session == root:
            members.add(process.pid)
    stack = [root] if any(process.pid == root for process in table) else []
    while stack:
        pid = stack.pop()
        members.add(pid)
        stack.extend(children.get(pid, []))
    return [process for process in table if process.alive and process.pid in members]


def run_tree(root: int) -> set[int]:
    """The live processes of a run: the root, its descendants and its session."""
    return {process.pid for process in _tree(root)}


def _proportional_bytes(pid: int, resident_bytes: int) -> int:
    """A process's proportional set size (shared pages divided among their sharers).

    Falls back to its resident size when /proc/PID/smaps_rollup cannot be
    read (the process is gone, or the kernel has none).
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return resident_bytes


@dataclass(frozen=True)
class Usage:
    """What a run's whole tree holds at one moment."""

    processes: int
    tasks: int
    memory_bytes: int


def _memfd_bytes(pids: list[int]) -> int:
    """Memory held by the memfds (anonymous memory files) the processes have open, each once.

    Such a file is memory that shows in no process's resident size until it
    is mapped, and lives on no file system of the run's disk budget.
    """
    total = 0
    seen: set[tuple[int, int]] = set()
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(folder)
        except OSError:
            continue
        for fd in fds:
            path = f"{folder}/{fd}"
            try:
                if not os.readlink(path).startswith("/memfd:"):
                    continue
                info = os.stat(path)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def tree_usage(root: int, memory_budget: int) -> Usage:
    """Processes, tasks (threads of all processes) and memory of a run's whole tree.

    Memory is the resident size of all processes together plus the memfds
    they hold; only when that is over `memory_budget` is the proportional
    set size read in place of the resident size (pages a fork shares with
    its parent or the template count once), which is exact but walks every
    process's page tables.
    """
    tree = _tree(root)
    held = _memfd_bytes([process.pid for process in tree])
    memory = held + sum(process.resident_pages for process in tree) * _PAGE_BYTES
    if memory > memory_budget:
        memory = held + sum(
            _proportional_bytes(process.pid, process.resident_pages * _PAGE_BYTES)
            for process in tree
        )
    return Usage(len(tree), sum(process.threads for process in tree), memory)


def kill_tree(root: int) -> None:
    """Kill every process of a run's tree, and return once none of it can run again.

    The root is stopped first, so it cannot fork any more; then every
    process of the tree (its process group too) is killed, and whatever a
    later scan still finds alive (a child forked just before its parent
    died, reparented to the root or the template, both subreapers) is killed
    again. In the isolated modes the run's PID namespace dies with its first
    process, the kernel killing the rest. Processes already inside exit
    count as dead (see `_process_table`).
    """
    with contextlib.suppress(OSError):
        os.kill(root, signal.SIGSTOP)
    for _ in range(_KILL_ROUNDS):
        tree = run_tree(root)
        if not tree:
            return
        for pid in tree:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(root, signal.SIGKILL)
        time.sleep(0.001)
    logger.error("sandbox run tree survived killing", extra={"root": root})


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
                allowed = (*settings.sandbox_egress_allowlist, *self._extra_origins)
                rules = Rules.build(settings.platform_url, allowed)
                self._proxy = EgressProxy(self.egress_socket, rules)
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
                # The very binary this process runs, named as `sys.executable` so it finds
                # the same environment: the path itself may cross directories this uid
                # cannot search (an interpreter under another user's home).
                executable="/proc/self/exe",
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
    """Reads a run's messages while keeping its budget (wall clock, tasks, memory, output)."""

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
            if self.root is not None and (failure := self._over_budget(self.root)):
                self.failure = failure
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

    def _over_budget(self, root: int) -> str | None:
        limits = self.limits
        usage = tree_usage(root, limits.memoryBytes)
        if usage.processes > limits.maxProcesses:
            return f"Process limit exceeded ({limits.maxProcesses})"
        if usage.tasks > limits.maxTasks:
            return f"Task limit exceeded ({limits.maxTasks} processes and threads)"
        if usage.memory_bytes > limits.memoryBytes:
            return f"Memory limit exceeded ({limits.memoryBytes // (1024 * 1024)} MB for the run)"
        return None


_runners: dict[str, Runner] = {}
_runners_lock = threading.Lock()


def get_runner() -> Runner:
    """The process-wide runner (its template starts on first use)."""
    with _runners_lock:
        if "runner" not in _runners:
            _runners["runner"] = Runner()
            atexit.register(_runners["runner"].close)
        return _runners["runner"]
