"""The warm template process: imports the agent runtime once, forks a child per run.

Started by `runner.Runner` as `python -I template.py COMPAT_DIR SOCKET_PATH`
with an empty environment. It listens on a Unix socket; each connection is
one run. The template forks at once, so runs never wait for each other, and
the child:

1. writes `{"pid": ...}` so the host can supervise it;
2. becomes a session leader (its own process group) and a child subreaper,
   so everything it starts stays in its process tree;
3. enters new mount, network, IPC and PID namespaces (and a user namespace
   when the template is not root); the only way out is the egress proxy's
   Unix socket. Its working directory becomes a tmpfs of `diskBytes` (in
   the run's mount namespace only, so the host's directory stays empty and
   the files die with the run), bound over /tmp, /var/tmp and /dev/shm;
   every other mount is made read-only. In its IPC namespace SysV shared
   memory is removed as soon as no process holds it (so it stays inside
   the memory budget) and no SysV message queue can be made; these settings
   are out of the run's reach, and it can make no user (so no IPC)
   namespace of its own. Then it drops to an unprivileged uid in a user
   namespace of that uid alone (root host), or enters a second user
   namespace as the host's uid (other hosts), and drops every capability;
4. applies CPU, address-space, file-size and open-file limits, clears the
   environment and changes into its working directory;
5. runs `async def run(input_dict, tools)` with the compatibility globals,
   streaming trace events and finally one `{"done": ...}` line;
6. waits to be killed by the host, which kills the whole process tree.

This module imports nothing from `shared`: it runs in its own interpreter
with the compatibility modules (COMPAT_DIR) on its path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import io
import json
import os
import resource
import signal
import socket
import sys
import traceback
from typing import Any

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_NEWPID = 0x20000000
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REMOUNT = 0x20
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_MS_BIND = 0x1000
_CAPABILITY_VERSION_3 = 0x20080522
# mount_setattr(2): the same number on x86-64 and arm64 (the generic table).
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_PR_SET_DUMPABLE = 4
# One inode of the run's tmpfs per this many bytes of its size (bounds empty files).
_BYTES_PER_INODE = 16 * 1024
# Settings of the run's own IPC namespace (see the module docstring).
_IPC_SETTINGS = (("shm_rmid_forced", "1"), ("msgmni", "0"))
# Kernel file systems that refuse a bind remount in a user namespace; their
# files are guarded by capabilities the run does not have.
_PSEUDO_FILESYSTEMS = {"proc", "sysfs"}
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
# Hidden behind the run's own directory; /tmp last, since the run's directory lives under it.
_SHADOWED_DIRS = ("/var/tmp", "/dev/shm", "/tmp")  # noqa: S108
_TRACEBACK_LINES = 20
_LINE_BUFFER = 4096
_EGRESS_NAME = ".egress.sock"
# Imported once by the template, so runs start warm (and need not read these files
# again: a run's uid may not be able to read the interpreter's directory).
_PRELOADED = (
    "agent_factory.remote_mcp_client",
    "litellm",
    "sandbox_runtime",
    "services.llm_service",
    "httpx",
    "httpcore._async.connection_pool",
    "anyio._backends._asyncio",
    "importlib.resources",
    "encodings.idna",
    "base64",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "functools",
    "hashlib",
    "itertools",
    "math",
    "random",
    "statistics",
    "string",
    "textwrap",
    "typing",
    "urllib.parse",
    "uuid",
)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


class LimitExceeded(Exception):
    """A resource limit of the run was reached."""


class _Channel:
    """Line-delimited JSON to the host over the run's connection."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        self._sock.sendall(data)


class _CappedOutput(io.TextIOBase):
    """Stands in for stdout/stderr: forwards whole lines as trace events, up to a budget."""

    def __init__(self, channel: _Channel, stream: str, budget: list[int]) -> None:
        self._channel = channel
        self._stream = stream
        self._budget = budget
        self._pending = ""
        self.exceeded = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        size = len(text.encode("utf-8", "replace"))
        if size > self._budget[0]:
            self.exceeded = True
            self._budget[0] = 0
            raise LimitExceeded("Output limit exceeded")
        self._budget[0] -= size
        self._pending += text
        if "\n" in text or len(self._pending) > _LINE_BUFFER:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._channel.send({"trace": {"type": self._stream, "text": self._pending}})
            self._pending = ""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _bind_run_dir(libc: ctypes.CDLL, request: dict[str, Any]) -> None:
    """Mount the run's tmpfs on its directory, bind the egress socket in, and it over temp dirs.

    Afterwards the run's tmpfs is reachable only at the temp dirs, and the
    runner's directory above it is an empty read-only tmpfs.
    """
    workdir, context = request["workdir"], request["context"]
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount private")
    size = int(request["limits"]["diskBytes"])
    uid, gid = request["owner"]
    inodes = max(size // _BYTES_PER_INODE, 64)
    options = f"size={size},nr_inodes={inodes},mode=0700,uid={uid},gid={gid}"
    flags = _MS_NOSUID | _MS_NODEV
    _check(libc.mount(b"tmpfs", workdir.encode(), b"tmpfs", flags, options.encode()), "mount tmpfs")
    inside = os.path.join(workdir, _EGRESS_NAME)
    with open(inside, "wb"):
        pass
    _check(
        libc.mount(context["egressSocket"].encode(), inside.encode(), None, _MS_BIND, None),
        "bind egress",
    )
    for shadowed in _SHADOWED_DIRS:
        if os.path.isdir(shadowed):
            _check(
                libc.mount(workdir.encode(), shadowed.encode(), None, _MS_BIND | _MS_REC, None),
                f"bind {shadowed}",
            )
    # The runner's directory (the template's socket, the other runs' directories) is
    # out of sight: under a temp dir it is shadowed already; elsewhere (SANDBOX_WORK_ROOT)
    # an empty read-only tmpfs covers it.
    runner_dir = os.path.dirname(workdir)
    if not any(runner_dir.startswith(d + "/") for d in _SHADOWED_DIRS):
        _check(
            libc.mount(
                b"tmpfs", runner_dir.encode(), b"tmpfs", _MS_RDONLY | flags | _MS_NOEXEC, b"size=4k"
            ),
            "hide the runner's directory",
        )
    context["egressSocket"] = os.path.join(_SHADOWED_DIRS[-1], _EGRESS_NAME)
    request["workdir"] = _SHADOWED_DIRS[-1]


def _mounts() -> list[tuple[str, set[str], str]]:
    """(mount point, per-mount options, type) of every mount, parents first."""
    found = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            before, _, after = line.partition(" - ")
            fields = before.split()
            point = fields[4].encode().decode("unicode_escape")
            found.append((point, set(fields[5].split(",")), after.split()[0]))
    return found


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def _read_only_everywhere(libc: ctypes.CDLL, writable: tuple[str, ...]) -> None:
    """Make every mount read-only except the mounts at `writable` (the run's tmpfs binds).

    One `mount_setattr` over the whole tree, then one per writable mount;
    where the kernel has no `mount_setattr`, a bind remount of each mount.
    """
    read_only = _MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0)
    size = ctypes.sizeof(_MountAttr)
    everything = libc.syscall(
        _SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", _AT_RECURSIVE, ctypes.byref(read_only), size
    )
    if everything != 0:
        if ctypes.get_errno() != errno.ENOSYS:
            _check(everything, "read-only /")
        _remount_read_only(libc, writable)
        return
    read_write = _MountAttr(0, _MOUNT_ATTR_RDONLY, 0, 0)
    for point in writable:
        if os.path.isdir(point):
            result = libc.syscall(
                _SYS_MOUNT_SETATTR, _AT_FDCWD, point.encode(), 0, ctypes.byref(read_write), size
            )
            _check(result, f"writable {point}")


def _remount_read_only(libc: ctypes.CDLL, writable: tuple[str, ...]) -> None:
    """Remount every mount read-only except those at or under `writable`, one by one."""
    flags = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC}
    flags |= {"noatime": 1024, "nodiratime": 2048}
    flags["relatime"] = 1 << 21
    for point, options, kind in _mounts():
        inside = any(point == d or point.startswith(d + "/") for d in writable)
        if inside or "ro" in options:
            continue
        extra = sum(bit for name, bit in flags.items() if name in options)
        result = libc.mount(
            None, point.encode(), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | extra, None
        )
        # A point that no longer resolves is covered by another mount, out of the run's reach.
        if result != 0 and kind not in _PSEUDO_FILESYSTEMS and ctypes.get_errno() != errno.ENOENT:
            _check(result, f"read-only {point}")


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(header), data), "capset")


def _map_ids(inside: tuple[int, int], outside: tuple[int, int]) -> None:
    """Map one uid and gid of a new user namespace (the only mapping an unprivileged one gets)."""
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{inside[0]} {outside[0]} 1"),
        ("gid_map", f"{inside[1]} {outside[1]} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as mapping:
            mapping.write(text)


def _unshare(request: dict[str, Any]) -> None:
    """Create the run's namespaces: mount, network, IPC and PID (and user, without root).

    Root host: the run later drops to an unprivileged uid. Other hosts: a
    user namespace maps the host's uid to root, so the set-up can write the
    IPC namespace's settings; `_enter` then leaves root behind.
    """
    libc = _libc()
    flags = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWPID
    if request["isolation"] == "root":
        uid = int(request["uid"])
        request["owner"] = (uid, uid)
        _check(libc.unshare(flags), "unshare")
        return
    request["host_ids"] = (os.getuid(), os.getgid())
    request["owner"] = (0, 0)
    _check(libc.unshare(_CLONE_NEWUSER | flags), "unshare")
    _map_ids((0, 0), request["host_ids"])


def _become_pid_one() -> None:
    """Fork into the new PID namespace; this process waits there and leaves with its child.

    The child is PID 1 of the run's namespace: it sees only the run's
    processes, can signal nothing else, and takes the whole namespace with
    it when it dies.
    """
    pid = os.fork()
    if pid == 0:
        return
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _enter(request: dict[str, Any]) -> None:
    """Inside the namespaces: the run's tmpfs, a fresh /proc, a read-only rest, no privileges.

    Root host: drop to `uid`, then enter a user namespace of that uid alone.
    Other hosts: enter a nested user namespace as the host's uid (the mounts
    made above are locked there). Either way every capability is dropped
    (nothing can be remounted), and the run can make no user namespace, so
    no IPC namespace of its own where the IPC settings would not hold.
    """
    libc = _libc()
    _bind_run_dir(libc, request)
    _check(
        libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "proc"
    )
    for name, value in _IPC_SETTINGS:
        _write_setting(f"kernel/{name}", value)
    if request["isolation"] == "userns":
        # The nested user namespace below, and no other.
        _write_setting("user/max_user_namespaces", "1")
        # The run keeps the host's uid, the owner of its namespaces' settings: a
        # read-only /proc/sys fixes them.
        _check(libc.mount(b"/proc/sys", b"/proc/sys", None, _MS_BIND, None), "bind /proc/sys")
        remount = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
        _check(libc.mount(None, b"/proc/sys", None, remount, None), "read-only /proc/sys")
    # The run's own /proc stays as mounted: the user namespace is set up through it,
    # and its files are guarded by uid and capabilities the run does not have.
    _read_only_everywhere(libc, (*_SHADOWED_DIRS, "/proc"))
    if request["isolation"] == "root":
        uid = int(request["uid"])
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        # The uid change made the process non-dumpable, its /proc/self root's; it maps
        # its own namespace through /proc/self (and `_prepare` makes it non-dumpable again).
        libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
        _check(libc.unshare(_CLONE_NEWUSER), "unshare user")
        _map_ids((uid, uid), (uid, uid))
        _write_setting("user/max_user_namespaces", "0")
    else:
        _check(libc.unshare(_CLONE_NEWUSER), "unshare user")
        _map_ids(request["host_ids"], (0, 0))
    _drop_capabilities(libc)


def _write_setting(name: str, value: str) -> None:
    with open(f"/proc/sys/{name}", "w") as setting:
        setting.write(value)


def _apply_limits(limits: dict[str, int]) -> None:
    cpu = limits["cpuSeconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memoryBytes"], limits["memoryBytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fileBytes"], limits["fileBytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["openFiles"], limits["openFiles"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _on_cpu_limit(signum: int, frame: Any) -> None:
    raise LimitExceeded("CPU time limit exceeded")


def _trimmed_traceback(exc: BaseException) -> str:
    """The traceback of user code only (frames of `<agent>`), at most a few lines."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<agent>"]
    lines = traceback.format_list(frames[-_TRACEBACK_LINES:])
    lines += traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    return text if frames else "".join(traceback.format_exception_only(type(exc), exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, LimitExceeded):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "MemoryError: memory limit exceeded"
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return _trimmed_traceback(exc).strip()


async def _call_run(namespace: dict[str, Any], request: dict[str, Any]) -> Any:
    run = namespace.get("run")
    if run is None or not asyncio.iscoroutinefunction(run):
        raise ValueError("Code did not define an 'async def run(input_dict, tools)' function.")
    try:
        return await run(input_dict=request["inputDict"], tools=request["tools"])
    finally:
        await namespace["_sandbox_runtime"].aclose()


def _encode(result: Any, limit: int) -> Any:
    try:
        encoded = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LimitExceeded(f"Result is not JSON: {exc}") from None
    if len(encoded) > limit:
        raise LimitExceeded("Result too large")
    return json.loads(encoded)


def _execute(request: dict[str, Any], channel: _Channel) -> dict[str, Any]:
    import sandbox_runtime

    budget = [int(request["limits"]["outputBytes"])]
    stdout = _CappedOutput(channel, "stdout", budget)
    stderr = _CappedOutput(channel, "stderr", budget)
    sys.stdout, sys.stderr = stdout, stderr
    runtime = sandbox_runtime.Runtime(request["context"], channel.send)
    namespace = runtime.globals()
    try:
        code = compile(request["code"], "<agent>", "exec")
        exec(code, namespace)  # noqa: S102 - this process is the sandbox
        result = asyncio.run(_call_run(namespace, request))
        if stdout.exceeded or stderr.exceeded:
            raise LimitExceeded("Output limit exceeded")
        encoded = _encode(result, request["limits"]["resultBytes"])
        return {"outcome": "success", "result": encoded, "opsLog": runtime.ops_log}
    except BaseException as exc:  # user code may raise anything, SystemExit included
        exceeded = stdout.exceeded or stderr.exceeded
        failure = LimitExceeded("Output limit exceeded") if exceeded else exc
        return {"outcome": "error", "error": _describe(failure), "opsLog": runtime.ops_log}
    finally:
        stdout.flush()
        stderr.flush()
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def _prepare(request: dict[str, Any]) -> None:
    os.setsid()
    _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if request["isolation"] != "none":
        _unshare(request)
        _become_pid_one()
        _enter(request)
    _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if request["isolation"] != "userns":
        # A root host's runs share their uid with other processes of the machine. In a
        # user namespace the uid is the host's own, no other run can see this one's
        # processes (PID namespaces), and the host must read their /proc/PID/fd and
        # smaps_rollup to keep the memory budget, so the run stays dumpable.
        _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.chdir(request["workdir"])
    os.environ.clear()
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    _apply_limits(request["limits"])


def _child(conn: socket.socket, listener: socket.socket) -> None:
    listener.close()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    channel = _Channel(conn)
    channel.send({"pid": os.getpid()})
    reader = conn.makefile("rb")
    request = json.loads(reader.readline())
    try:
        _prepare(request)
        outcome = _execute(request, channel)
    except Exception as exc:
        channel.send({"done": {"outcome": "error", "error": f"Sandbox setup failed: {exc!r}"}})
        os._exit(1)
    with contextlib.suppress(OSError):
        channel.send({"done": outcome})
    # The host kills the whole process tree once it has read the outcome.
    reader.read()
    os._exit(0)


def _reap(active: set[int]) -> None:
    """Collect finished children; kill anything else reparented to the template."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        active.discard(pid)
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in active:
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            if fields[1].decode() == me:
                os.kill(int(entry), signal.SIGKILL)


def _shutdown(active: set[int]) -> None:
    """The host is gone: kill every run, then leave."""
    for pid in active:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    os._exit(0)


def main() -> None:
    """Serve runs forever (until the host kills the template)."""
    compat_dir, socket_path = sys.argv[1], sys.argv[2]
    sys.path.insert(0, compat_dir)
    import importlib

    for name in _PRELOADED:
        importlib.import_module(name)
    _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    listener.settimeout(0.5)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    active: set[int] = set()
    host = os.getppid()
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            _reap(active)
            if os.getppid() != host:
                _shutdown(active)
            continue
        conn.settimeout(None)
        pid = os.fork()
        if pid == 0:
            try:
                _child(conn, listener)
            finally:
                os._exit(1)
        active.add(pid)
        conn.close()
        _reap(active)


if __name__ == "__main__":
    main()
