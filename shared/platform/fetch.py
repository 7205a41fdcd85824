"""The guarded fetcher: the one way the service fetches a user-supplied URL.

Spec fetch, MCP, image URLs and message attachments all come through here.
For every URL, and again for every redirect hop:

1. the URL is read once and strictly (`shared.platform.addresses.parse_url`:
   `http` and `https` only, no credentials, backslashes, odd IPv4 forms,
   zone ids, dot segments or other forms URL parsers read differently);
2. the host is resolved once (`getaddrinfo`) and every address it resolves
   to must be public (`shared.platform.addresses.refusal`) or allowlisted
   (`FETCH_ALLOWED_ADDRESSES`), else `BadRequest` (400);
3. the connection goes to that checked address, never to the name: a
   urllib3 pool is opened on the IP itself, with the `Host` header, the TLS
   SNI name and the certificate check all using the URL's host name, so no
   second resolution (DNS rebinding) can send it elsewhere;
4. redirects are never followed by the HTTP library: each `Location` is a
   new URL that goes through steps 1 to 3, up to `FETCH_MAX_REDIRECTS`;
5. the body is streamed and cut off at `FETCH_MAX_BYTES`, with connect and
   read timeouts per hop and a total deadline over the whole fetch.

Upstream failures (unresolvable host, refused connection, TLS failure,
timeout, an error status, a body over the limit) raise `BadGateway` (502).
No environment proxy settings are consulted.

`check_url` and `resolve_checked` expose steps 1 to 3 to clients with their
own HTTP stack (the MCP client pins its httpx connections with them).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from shared.platform import ratelimit
from shared.platform.addresses import AllowEntry, IPAddress, URLRefused, parse_url, refusal
from shared.platform.config import get_settings
from shared.platform.errors import BadGateway, BadRequest

if TYPE_CHECKING:
    import urllib3

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Policy:
    """What a fetch may reach and how much of it, for how long.

    Attributes:
        allowlist: Addresses allowed although not public.
        max_bytes: Largest body accepted.
        connect_timeout: Seconds to open a connection (per hop).
        read_timeout: Seconds to wait for each piece of the answer.
        total_timeout: Seconds for the whole fetch, redirects included.
        max_redirects: Redirects followed at most.
    """

    allowlist: tuple[AllowEntry, ...] = ()
    max_bytes: int = 5 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, **overrides: float) -> Policy:
        """The policy the `FETCH_*` settings describe, with some limits overridden.

        Args:
            **overrides: Field values replacing the configured ones (e.g. `max_bytes`).

        Returns:
            The policy.
        """
        settings = get_settings()
        values: dict[str, float] = {
            "max_bytes": settings.fetch_max_bytes,
            "connect_timeout": settings.fetch_connect_timeout_seconds,
            "read_timeout": settings.fetch_read_timeout_seconds,
            "total_timeout": settings.fetch_total_timeout_seconds,
            "max_redirects": settings.fetch_max_redirects,
            **overrides,
        }
        return cls(
            allowlist=tuple(settings.fetch_allowlist()),
            max_bytes=int(values["max_bytes"]),
            connect_timeout=values["connect_timeout"],
            read_timeout=values["read_timeout"],
            total_timeout=values["total_timeout"],
            max_redirects=int(values["max_redirects"]),
        )


@dataclass(frozen=True)
class Target:
    """A URL whose host has been resolved once to an address that may be reached.

    Attributes:
        url: The URL rebuilt from its parsed parts (the fragment dropped).
        scheme: `http` or `https`.
        host: The host name (IDNA-encoded) or IP literal, as the URL names it.
        port: The port (the scheme's default when the URL has none).
        address: The checked address to connect to.
        target: The request target (path and query).
    """

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress
    target: str

    @property
    def host_header(self) -> str:
        """The `Host` header value: the host, with the port when it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Fetched:
    """A fetched body.

    Attributes:
        url: The final URL, after redirects.
        status: Its status (2xx).
        content_type: The `Content-Type` header, or "".
        content: The body (at most the policy's `max_bytes`).
        headers: The response headers, names in lower case.
    """

    url: str
    status: int
    content_type: str
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)


def limit_caller(subject: str) -> None:
    """Count one outbound request a caller asked for (`OUTBOUND_REQUESTS_PER_MINUTE`).

    Args:
        subject: Who asked (the principal's subject).

    Raises:
        RateLimited: The caller's budget for this minute is spent (429).
    """
    ratelimit.consume(
        f"outbound:{subject}",
        get_settings().outbound_requests_per_minute,
        timedelta(minutes=1),
        "Too many requests to outside servers; retry in a minute",
    )


def check_url(url: str, policy: Policy | None = None) -> Target:
    """Parse a user-supplied URL, resolve its host once and check every address.

    Args:
        url: The URL.
        policy: Defaults to `Policy.from_settings()`.

    Returns:
        The target, pinned to a checked address.

    Raises:
        BadRequest: Not an http(s) URL, or its host is or resolves to an
            address that may not be reached.
        BadGateway: The host name does not resolve.
    """
    policy = policy or Policy.from_settings()
    try:
        parsed = parse_url(url.strip())
    except URLRefused as exc:
        raise BadRequest(f"Not an accepted URL: {exc}") from exc
    address = resolve_checked(parsed.host, parsed.port, policy)
    return Target(
        url=parsed.url,
        scheme=parsed.scheme,
        host=parsed.host,
        port=parsed.port,
        address=address,
        target=parsed.target,
    )


def resolve_checked(host: str, port: int, policy: Policy) -> IPAddress:
    """Resolve `host` once and return the address to connect to.

    Every address the name resolves to must pass (a name with one private
    address among public ones is refused); IPv4 is preferred over IPv6.

    Args:
        host: A host name or IP literal.
        port: The port the connection will use (allowlist entries may name one).
        policy: What may be reached.

    Returns:
        The address.

    Raises:
        BadRequest: The host is, or resolves to, an address that may not be reached.
        BadGateway: The name does not resolve.
    """
    addresses = resolve(host, port)
    for address in addresses:
        reason = refusal(address)
        if reason and not any(entry.matches(address, port) for entry in policy.allowlist):
            resolved = "is" if _is_literal(host) else f"resolves to {address},"
            raise BadRequest(f"Refusing to connect to {host}: it {resolved} {reason}")
    return addresses[0]


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, once, IPv4 first (zone ids dropped).

    Args:
        host: A host name or IP literal.
        port: The port the connection will use.

    Returns:
        The addresses, never empty.

    Raises:
        BadGateway: The name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise BadGateway(f"Could not resolve host {host}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BadGateway(f"Could not resolve host {host}")
    return sorted(addresses, key=lambda address: address.version)


def fetch(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    policy: Policy | None = None,
) -> Fetched:
    """GET a user-supplied URL under the guard (see the module docstring).

    Args:
        url: The URL.
        headers: Extra request headers (`Host` is always set by the fetcher).
        policy: Defaults to `Policy.from_settings()`.

    Returns:
        The body of the final 2xx answer.

    Raises:
        BadRequest: The URL, or a redirect, leads somewhere that may not be reached.
        BadGateway: The server could not be reached, answered with an error
            status, too slowly, or with more than `max_bytes`.
    """
    policy = policy or Policy.from_settings()
    deadline = time.monotonic() + policy.total_timeout
    current = url
    for _hop in range(policy.max_redirects + 1):
        target = check_url(current, policy)
        response = _open(target, headers or {}, policy, deadline)
        try:
            location = response.headers.get("Location")
            if response.status in _REDIRECTS and location:
                current = urljoin(target.url, location)
                continue
            if not 200 <= response.status < 300:
                raise BadGateway(f"{_origin(target)} answered {response.status}")
            content = _read_capped(response, target, policy, deadline)
        finally:
            response.release_conn()
            response.close()
        return Fetched(
            url=target.url,
            status=response.status,
            content_type=response.headers.get("Content-Type", ""),
            content=content,
            headers={name.lower(): value for name, value in response.headers.items()},
        )
    raise BadGateway(f"Too many redirects (more than {policy.max_redirects})")


def _open(
    target: Target, headers: dict[str, str], policy: Policy, deadline: float
) -> urllib3.BaseHTTPResponse:
    import urllib3

    remaining = _remaining(target, deadline, policy)
    timeout = urllib3.Timeout(
        connect=min(policy.connect_timeout, remaining), read=min(policy.read_timeout, remaining)
    )
    request_headers = {
        "User-Agent": "series-fetcher/1",
        "Accept-Encoding": "identity",
        **{name: value for name, value in headers.items() if name.lower() != "host"},
        "Host": target.host_header,
    }
    try:
        return pinned_pool(target, timeout).urlopen(
            "GET",
            target.target,
            headers=request_headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
            timeout=timeout,
        )
    except urllib3.exceptions.HTTPError as exc:
        raise BadGateway(_failure(target, exc, policy)) from exc


def pinned_pool(target: Target, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to the target's checked address, never to its name.

    For https the TLS SNI name and the certificate check use the URL's host
    name (verified against certifi's roots). The caller sends the request
    with `target.target` and a `Host` header of `target.host_header`, and
    `assert_same_host=False`, `retries=False`, `redirect=False`.

    Args:
        target: A checked target.
        timeout: Connect and read timeouts.

    Returns:
        The pool (close it when done).
    """
    import certifi
    import urllib3

    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            str(target.address),
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(
        str(target.address), target.port, timeout=timeout, retries=False, maxsize=1
    )


def _read_capped(
    response: urllib3.BaseHTTPResponse, target: Target, policy: Policy, deadline: float
) -> bytes:
    import urllib3

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise BadGateway(f"{_origin(target)} sent more than {policy.max_bytes} bytes")
    body = bytearray()
    try:
        while chunk := response.read1(_CHUNK):
            body += chunk
            if len(body) > policy.max_bytes:
                raise BadGateway(f"{_origin(target)} sent more than {policy.max_bytes} bytes")
            _remaining(target, deadline, policy)
    except urllib3.exceptions.HTTPError as exc:
        raise BadGateway(_failure(target, exc, policy)) from exc
    return bytes(body)


def _remaining(target: Target, deadline: float, policy: Policy) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BadGateway(f"{_origin(target)} took longer than {policy.total_timeout:g} s")
    return remaining


def _failure(target: Target, exc: Exception, policy: Policy) -> str:
    import urllib3

    origin = _origin(target)
    # NewConnectionError is a ConnectTimeoutError in urllib3: test it first.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return f"Could not connect to {origin}"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return f"{origin} did not accept a connection within {policy.connect_timeout:g} s"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return f"{origin} did not answer within {policy.read_timeout:g} s"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"{origin} failed TLS verification"
    return f"{origin} broke off the answer"


def _origin(target: Target) -> str:
    return f"{target.scheme}://{target.host_header}"


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True
