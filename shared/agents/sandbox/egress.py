"""The egress proxy: the only way out of a sandboxed run.

Runs in the host (outside the sandbox) on a Unix socket that the run's
network namespace cannot bypass. A request arrives with its real URL in
`X-Sandbox-Target`, and leaves only after these steps:

1. the target is read once, strictly (`shared.platform.addresses.parse_url`):
   http(s) only, no user info, backslashes, odd IPv4 forms, zone ids, dot
   segments or anything else two URL parsers could read apart;
2. its origin decides the rule: the platform's own origin (`PLATFORM_URL`) is
   reachable only with `POST` at the callback paths agent code uses
   (`CALLBACK_PATHS`); an allowlisted origin (`SANDBOX_EGRESS_ALLOWLIST`, and
   a runner's extra origins in tests) is reachable although not public;
   anything else must resolve only to public addresses, judged by the same
   policy as the guarded fetcher (`shared.platform.addresses.refusal`);
3. the host is resolved once and the connection goes to that address
   (`shared.platform.fetch.pinned_pool`: for https the SNI name and the
   certificate check use the host name), with a request built from the
   parsed parts, so nothing parses the raw string again.

Refusals are 403 with a reason. Bodies are capped both ways (10 MiB), at
most `MAX_CONCURRENT_REQUESTS` are forwarded at once (503 beyond), and
redirects are returned to the caller (whose next request is checked again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

from shared.platform.addresses import URLRefused, parse_url
from shared.platform.errors import BadGateway, BadRequest
from shared.platform.fetch import Policy, Target, pinned_pool, resolve, resolve_checked

if TYPE_CHECKING:
    import urllib3

logger = logging.getLogger(__name__)

TARGET_HEADER = "X-Sandbox-Target"
# The platform routes agent code calls back (see compat/): the LLM gateway, agent
# calls, the data store and MCP. Every other route of the platform is out of reach.
CALLBACK_PATHS = frozenset(
    {"/agents/run-code/llm", "/agents/run-code/call", "/data-store/ops", "/mcp/tools", "/mcp/call"}
)
# Requests forwarded at once (each may hold a 10 MiB body in the host, outside any
# run's memory budget); beyond it the proxy answers 503 at once.
MAX_CONCURRENT_REQUESTS = 64
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


@dataclass(frozen=True)
class Rules:
    """Who a run may reach besides public addresses.

    Attributes:
        platform: The platform's origin (`scheme://host:port`, from `parse_url`).
        callbacks: The exact paths reachable there (the platform's path prefix included).
        allowed: Origins reachable at any path although not public.
    """

    platform: str
    callbacks: frozenset[str]
    allowed: frozenset[str]

    @classmethod
    def build(cls, platform_url: str, allowed_urls: tuple[str, ...]) -> Rules:
        """Rules from the platform's base URL and allowlisted URLs (each read by `parse_url`).

        Raises:
            URLRefused: A URL is not in the strict form.
        """
        platform = parse_url(platform_url)
        prefix = platform.path.rstrip("/")
        return cls(
            platform=platform.origin,
            callbacks=frozenset(prefix + path for path in CALLBACK_PATHS),
            allowed=frozenset(parse_url(url).origin for url in allowed_urls),
        )


def check_target(method: str, text: str, rules: Rules) -> Target:
    """Parse a run's target once and pin it to an address it may reach.

    Args:
        method: The request's method.
        text: The `X-Sandbox-Target` value.
        rules: What the run may reach besides public addresses.

    Returns:
        The target, with the address to connect to.

    Raises:
        EgressRefused: Not an accepted URL, a platform path that is not a
            callback, or an address that is not public (outside the allowed origins).
        BadGateway: The host does not resolve.
    """
    try:
        parsed = parse_url(text)
    except URLRefused as exc:
        raise EgressRefused(str(exc)) from exc
    if parsed.origin == rules.platform:
        if method != "POST" or parsed.query or parsed.path not in rules.callbacks:
            raise EgressRefused("Only the platform's agent callbacks may be called")
        address = resolve(parsed.host, parsed.port)[0]
    elif parsed.origin in rules.allowed:
        address = resolve(parsed.host, parsed.port)[0]
    else:
        try:
            address = resolve_checked(parsed.host, parsed.port, Policy())
        except BadRequest as exc:
            raise EgressRefused(exc.detail) from exc
    return Target(
        url=parsed.url,
        scheme=parsed.scheme,
        host=parsed.host,
        port=parsed.port,
        address=address,
        target=parsed.target,
    )


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    rules = Rules(platform="", callbacks=frozenset(), allowed=frozenset())
    max_bytes = 10 * 1024 * 1024
    timeout_seconds = 60.0
    slots: threading.BoundedSemaphore


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
        if not self.server.slots.acquire(blocking=False):
            self._refuse(503, "Too many requests at once through the sandbox's egress")
            return
        try:
            self._forward_one()
        finally:
            self.server.slots.release()

    def _forward_one(self) -> None:
        import urllib3

        length_text = self.headers.get("Content-Length") or "0"
        if "Transfer-Encoding" in self.headers or not length_text.isdigit():
            self._refuse(411, "Send a body with a Content-Length")
            return
        length = int(length_text)
        if length > self.server.max_bytes:
            self._refuse(413, "Request body too large")
            return
        body = self.rfile.read(length) if length else None
        try:
            target = check_target(
                self.command, self.headers.get(TARGET_HEADER, ""), self.server.rules
            )
        except EgressRefused as exc:
            self._refuse(403, f"Egress refused: {exc}")
            return
        except BadGateway as exc:
            self._refuse(502, exc.detail)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = target.host_header
        timeout = self.server.timeout_seconds
        pool = pinned_pool(target, urllib3.Timeout(connect=min(timeout, 10.0), read=timeout))
        try:
            response = pool.urlopen(
                self.command,
                target.target,
                body=body,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
            try:
                self._relay(response)
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            self._refuse(502, f"Upstream unreachable: {type(exc).__name__}")
        finally:
            pool.close()

    def _relay(self, response: urllib3.BaseHTTPResponse) -> None:
        content = response.read(self.server.max_bytes + 1, decode_content=True)
        if len(content) > self.server.max_bytes:
            self._refuse(502, "Response too large")
            return
        kept = [(k, v) for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP]
        self._answer(response.status, content, kept)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward  # noqa: N815


class EgressProxy:
    """The proxy server, serving on a Unix socket in a background thread.

    Args:
        socket_path: Where to listen (made reachable by the sandbox's uid).
        rules: What runs may reach besides public addresses.
    """

    def __init__(self, socket_path: str, rules: Rules) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        self.socket_path = socket_path
        self._server = _Server(socket_path, _Handler)
        self._server.rules = rules
        self._server.slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        os.chmod(socket_path, 0o666)  # noqa: S103 - the sandbox uid must connect; dir is 0711
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
