"""Run gcloud-tasks-emulator bound to 127.0.0.1 (it binds [::] on its own).

Runs inside `.venv-tasks` (the emulator pins protobuf<5), so it imports only
that venv's packages. Usage: `python tasks_emulator.py PORT MAX_RETRIES QUEUE...`
where each QUEUE is a full `projects/P/locations/L/queues/Q` name.
"""

import logging
import sys
import time
from concurrent import futures
from typing import Any

import grpc
from gcloud_tasks_emulator import server


def _run_loopback(self: Any) -> None:
    self._httpd = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_CloudTasksServicer_to_server(server.Greeter(self._state), self._httpd)
    self._httpd.add_insecure_port(f"127.0.0.1:{self._port}")
    self._httpd.start()
    while self._is_running.is_set():
        time.sleep(0.1)


def main() -> None:
    """Start the emulator with the given port, retry limit and queues."""
    port, max_retries, *queues = sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s tasks-emulator %(message)s")
    server.APIThread.run = _run_loopback
    server.create_server("127.0.0.1", int(port), "127.0.0.1", 80, queues, int(max_retries)).run()


if __name__ == "__main__":
    main()
