"""What a stand-in received and answered, listed at `GET /` and cleared at `DELETE /`."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import flask

LIMIT = 500  # exchanges kept; older ones are dropped


class Journal:
    """The exchanges of one stand-in: request and answer bodies, never headers (keys)."""

    def __init__(self) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=LIMIT)
        self._lock = threading.Lock()

    def record(self, request: flask.Request, response: flask.Response) -> None:
        """Keep one exchange (the query string stands for the body of a GET)."""
        received = request.get_json(silent=True) if request.is_json else None
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "method": request.method,
            "path": request.path,
            "received": received if received is not None else dict(request.args),
            "status": response.status_code,
            "answered": response.get_json(silent=True) if response.is_json else None,
        }
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        """The kept exchanges, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget every exchange."""
        with self._lock:
            self._entries.clear()


def install(
    app: flask.Flask,
    journal: Journal,
    *,
    service: str,
    summary: Callable[[], dict[str, Any]],
    clear: Callable[[], None],
) -> None:
    """Record `app`'s API exchanges in `journal` and serve the listing.

    Args:
        app: The stand-in's app.
        journal: Where its exchanges go.
        service: The name shown in the listing.
        summary: Extra listing fields (for example the messages sent).
        clear: Forgets the stand-in's records (`DELETE /`), the journal's included.
    """

    @app.after_request
    def keep(response: flask.Response) -> flask.Response:
        if flask.request.path != "/":
            journal.record(flask.request, response)
        return response

    @app.get("/")
    def listing() -> flask.Response:
        return flask.jsonify(service=service, **summary(), exchanges=journal.entries())

    @app.delete("/")
    def forget() -> flask.Response:
        clear()
        return flask.jsonify(cleared=True)
