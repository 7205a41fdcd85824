"""Serve on free 127.0.0.1 ports: a WSGI app in a thread, or a function in its own process."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import make_server


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve `app` until the block ends.

    Yields:
        The base URL, like `http://127.0.0.1:PORT`.
    """
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@contextmanager
def function_process(
    args: list[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float = 60
) -> Iterator[str]:
    """Start a functions-framework process on a free port; stop it when the block ends.

    Args:
        args: The command, without `--host` and `--port`.
        env: Its whole environment.
        cwd: Its working directory.
        timeout: How long it may take to answer its first request.

    Yields:
        The base URL, once the process answers.

    Raises:
        AssertionError: The process exited or did not answer in time (with its stderr).
    """
    from devstack.emulators import free_port

    port = free_port()
    # A file, not a pipe: a process that logs more than a pipe holds would block.
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [*args, "--host=127.0.0.1", f"--port={port}"],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    requests.get(url, timeout=1)
                    break
                except requests.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        stderr.seek(0)
                        output = stderr.read().decode(errors="replace")[-3000:]
                        raise AssertionError(f"{args} did not start:\n{output}") from None
                    time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)
