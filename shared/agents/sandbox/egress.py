"""The egress proxy: the only way out of a sandboxed run.

Runs in the host (outside the sandbox) on a Unix socket that the run's
network namespace cannot bypass. A request arrives with its real URL in
`X-Sandbox-Target`; it leaves only for http(s) targets whose every resolved
address is public, or whose origin is explicitly allowed (the platform
itself, and `SANDBOX_EGRESS_ALLOWLIST` for local runs and tests). The
metadata server, link-local, private and loopback addresses are refused.
Bodies are capped both ways; redirects are returned to the caller (whose
next request is checked again).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

TARGET_HEADER = "X-Sandbox-Target"
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
    TARGET_HEADER.lower(),
}


class EgressRefused(Exception):
    """The target may not be reached from a sandbox."""


def origin(url: str) -> str:
    """`scheme://host:port` of a URL, with the default port made explicit."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def check_target(url: str, allowed_origins: frozenset[str]) -> None:
    """Refuse targets a sandbox may not reach.

    Raises:
        EgressRefused: Not http(s), no host, or an address that is not public.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused("Only http(s) URLs may be fetched")
    if origin(url) in allowed_origins:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise EgressRefused(f"Cannot resolve {parts.hostname}") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global or address.is_multicast:
            raise EgressRefused(f"Address of {parts.hostname} is not public")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allowed_origins: frozenset[str] = frozenset()
    max_bytes = 10 * 1024 * 1024
    timeout_seconds = 60.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Requests are not logged (URLs may carry secrets)."""

    def address_string(self) -> str:
        """The peer has no address on a Unix socket."""
        return "sandbox"

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        self._answer(status, body, [("Content-Type", "application/json")])

    def _forward(self) -> None:
        import requests

        target = self.headers.get(TARGET_HEADER, "")
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.max_bytes:
            self._refuse(413, "Request body too large")
            return
        body = self.rfile.read(length) if length else None
        try:
            check_target(target, self.server.allowed_origins)
        except EgressRefused as exc:
            self._refuse(403, f"Egress refused: {exc}")
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            with requests.request(
                self.command,
                target,
                headers=headers,
                data=body,
                timeout=self.server.timeout_seconds,
                allow_redirects=False,
                stream=True,
            ) as response:
                content = response.raw.read(self.server.max_bytes + 1, decode_content=True)
                if len(content) > self.server.max_bytes:
                    self._refuse(502, "Response too large")
                    return
                kept = [(k, v) for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP]
                self._answer(response.status_code, content, kept)
        except requests.RequestException as exc:
            self._refuse(502, f"Upstream unreachable: {type(exc).__name__}")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward  # noqa: N815


class EgressProxy:
    """The proxy server, serving on a Unix socket in a background thread.

    Args:
        socket_path: Where to listen (made reachable by the sandbox's uid).
        allowed_origins: Origins reachable even when not public (`scheme://host:port`).
    """

    def __init__(self, socket_path: str, allowed_origins: frozenset[str]) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        self.socket_path = socket_path
        self._server = _Server(socket_path, _Handler)
        self._server.allowed_origins = allowed_origins
        os.chmod(socket_path, 0o666)  # noqa: S103 - the sandbox uid must connect; dir is 0711
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
