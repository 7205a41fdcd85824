"""What the Firestore client asks the emulator: queries built and documents read (tests, bench).

`observed_firestore()` puts a gRPC client interceptor on the channel the
Firestore client opens to the emulator, for the process it runs in (the local
gateway serves every function in-process). Production code is untouched: the
interceptor goes on the emulator channel only, through the client's
`_emulator_channel` (google-cloud-firestore 2.34), and the cached clients are
rebuilt on entry and on exit.

Counted as read: every document a query returns, and every document a lookup
asks for (found or missing), as Firestore bills them; an empty query result
counts none here (Firestore bills it one read).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_QUERIES = ("RunQuery", "RunAggregationQuery")
_LOOKUPS = ("BatchGetDocuments", "GetDocument")


@dataclass
class Probe:
    """What the client asked since the probe started (thread-safe)."""

    reads: int = 0
    queries: list[tuple[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_reads(self, count: int) -> None:
        """Count `count` documents read."""
        with self._lock:
            self.reads += count

    def add_query(self, parent: str, structured_query: Any) -> None:
        """Record a query as sent (its parent path and `StructuredQuery`)."""
        with self._lock:
            self.queries.append((parent, structured_query))

    def read_count(self) -> int:
        """The documents read so far."""
        with self._lock:
            return self.reads


class _Counted:
    """A server stream that counts the documents in its responses as they arrive."""

    def __init__(self, call: Any, probe: Probe, method: str) -> None:
        self._call = call
        self._probe = probe
        self._method = method

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        response = next(self._call)
        queried = self._method == "RunQuery" and "document" in response
        looked_up = self._method == "BatchGetDocuments" and (
            "found" in response or bool(response.missing)
        )
        if queried or looked_up:
            self._probe.add_reads(1)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


def _interceptor(probe: Probe) -> Any:
    import grpc

    class Interceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            if details.method.rsplit("/", 1)[-1] == "GetDocument":
                probe.add_reads(1)
            return continuation(details, request)

        def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            method = details.method.rsplit("/", 1)[-1]
            if method == "RunQuery":
                probe.add_query(request.parent, request.structured_query)
            elif method == "RunAggregationQuery":
                query = request.structured_aggregation_query.structured_query
                probe.add_query(request.parent, query)
            call = continuation(details, request)
            return _Counted(call, probe, method) if method in (*_QUERIES, *_LOOKUPS) else call

    return Interceptor()


@contextlib.contextmanager
def observed_firestore() -> Iterator[Probe]:
    """Observe every call this process's Firestore clients make to the emulator."""
    import grpc
    from google.cloud.firestore_v1 import base_client

    from shared.platform import clients

    probe = Probe()
    original: Any = base_client.BaseClient._emulator_channel

    def channel(self: Any, transport: Any) -> Any:
        return grpc.intercept_channel(original(self, transport), _interceptor(probe))

    base_client.BaseClient._emulator_channel = channel  # type: ignore[method-assign]
    clients.reset()
    try:
        yield probe
    finally:
        base_client.BaseClient._emulator_channel = original  # type: ignore[method-assign]
        clients.reset()
