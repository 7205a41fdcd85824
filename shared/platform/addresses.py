"""Which network addresses an outbound fetch of a user-supplied URL may reach.

Pure functions over `ipaddress` values (no I/O): the guarded fetcher
(`shared.platform.fetch`) resolves a host once and asks `refusal` about every
address the name resolved to. Only public unicast addresses pass:

- IPv4: everything in `_V4_REFUSED` (this-network, private, CGNAT, loopback,
  link-local with the cloud metadata address, IETF and documentation blocks,
  benchmarking, multicast, reserved and broadcast) and anything else Python
  does not call global;
- IPv6: unspecified, loopback, discard, IETF (including Teredo),
  documentation, unique-local (with AWS's `fd00:ec2::254`), link-local,
  site-local, multicast and everything outside `2000::/3`; forms that embed
  an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
  NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) are judged by the IPv4
  address they carry, and the local-use NAT64 prefix is refused outright.

An allowlist (`FETCH_ALLOWED_ADDRESSES`) lets chosen addresses through, for
tests and local runs: entries are `ADDRESS:PORT` (`[ADDRESS]:PORT` for IPv6,
one endpoint) or `ADDRESS` / `CIDR` (every port). In production, entries that
reach loopback, unspecified, link-local (the metadata server) or multicast
addresses are refused when the settings load (`unsafe_in_production`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_v4 = ipaddress.IPv4Network
_v6 = ipaddress.IPv6Network

_V4_REFUSED: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_v4("0.0.0.0/8"), "an unspecified (this-network) address"),
    (_v4("10.0.0.0/8"), "a private address"),
    (_v4("100.64.0.0/10"), "a carrier-grade NAT (shared) address"),
    (_v4("127.0.0.0/8"), "a loopback address"),
    (_v4("169.254.169.254/32"), "the cloud metadata address"),
    (_v4("169.254.0.0/16"), "a link-local address"),
    (_v4("172.16.0.0/12"), "a private address"),
    (_v4("192.0.0.0/24"), "an IETF protocol address"),
    (_v4("192.0.2.0/24"), "a documentation address"),
    (_v4("192.88.99.0/24"), "a 6to4 relay address"),
    (_v4("192.168.0.0/16"), "a private address"),
    (_v4("198.18.0.0/15"), "a benchmarking address"),
    (_v4("198.51.100.0/24"), "a documentation address"),
    (_v4("203.0.113.0/24"), "a documentation address"),
    (_v4("224.0.0.0/4"), "a multicast address"),
    (_v4("240.0.0.0/4"), "a reserved or broadcast address"),
)

_V6_REFUSED: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_v6("::/128"), "an unspecified address"),
    (_v6("::1/128"), "a loopback address"),
    (_v6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_v6("100::/64"), "a discard address"),
    (_v6("2001::/23"), "an IETF protocol address"),
    (_v6("2001:db8::/32"), "a documentation address"),
    (_v6("fd00:ec2::254/128"), "the cloud metadata address"),
    (_v6("fc00::/7"), "a unique-local (private) address"),
    (_v6("fe80::/10"), "a link-local address"),
    (_v6("fec0::/10"), "a site-local address"),
    (_v6("ff00::/8"), "a multicast address"),
)

_MAPPED = _v6("::ffff:0:0/96")
_COMPATIBLE = _v6("::/96")
_NAT64 = _v6("64:ff9b::/96")
_SIX_TO_FOUR = _v6("2002::/16")
_GLOBAL_UNICAST = _v6("2000::/3")

# Allowlist entries that can never be right in production: they reach this
# machine, its link (the metadata server) or every host at once.
_NEVER_IN_PRODUCTION: tuple[IPNetwork, ...] = (
    _v4("0.0.0.0/8"),
    _v4("127.0.0.0/8"),
    _v4("169.254.0.0/16"),
    _v4("224.0.0.0/4"),
    _v6("::/128"),
    _v6("::1/128"),
    _v6("::ffff:0:0/96"),
    _v6("::/96"),
    _v6("fe80::/10"),
    _v6("fd00:ec2::254/128"),
    _v6("ff00::/8"),
)


def refusal(address: IPAddress) -> str | None:
    """Say why an outbound fetch must not connect to `address`.

    Args:
        address: A resolved address (an IPv6 scope id is ignored).

    Returns:
        None for a public unicast address; otherwise what kind of address it
        is, as a phrase ("a loopback address") safe to show the caller.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return _v4_refusal(address)
    plain = ipaddress.IPv6Address(int(address))
    embedded = _embedded_v4(plain)
    if embedded is not None:
        form, inner = embedded
        reason = _v4_refusal(inner)
        return f"{reason} ({form} {inner})" if reason else None
    for network, reason in _V6_REFUSED:
        if plain in network:
            return reason
    if plain not in _GLOBAL_UNICAST:
        return "a reserved address"
    return None


def _v4_refusal(address: ipaddress.IPv4Address) -> str | None:
    for network, reason in _V4_REFUSED:
        if address in network:
            return reason
    return None if address.is_global else "a non-public address"


def _embedded_v4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 form carries, with the form's name, if it is such a form."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _MAPPED:
        return "IPv4-mapped", low32
    if address in _NAT64:
        return "NAT64 for", low32
    if address in _SIX_TO_FOUR:
        return "6to4 for", ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    if address in _COMPATIBLE and int(address) > 1:
        return "IPv4-compatible", low32
    return None


@dataclass(frozen=True)
class AllowEntry:
    """One allowlist entry: a network, and the one port it is limited to (None: any)."""

    network: IPNetwork
    port: int | None

    def matches(self, address: IPAddress, port: int) -> bool:
        """Whether a connection to `address`:`port` is covered by this entry."""
        plain: IPAddress = address
        if isinstance(address, ipaddress.IPv6Address):
            plain = ipaddress.IPv6Address(int(address))
        return plain in self.network and self.port in (None, port)


def parse_allow_entry(text: str) -> AllowEntry:
    """Parse `ADDRESS:PORT`, `[IPV6]:PORT`, `ADDRESS` or `CIDR`.

    Args:
        text: One entry of `FETCH_ALLOWED_ADDRESSES`.

    Returns:
        The entry.

    Raises:
        ValueError: The entry is none of those forms.
    """
    value = text.strip()
    port: int | None = None
    if value.startswith("["):
        host, separator, rest = value[1:].partition("]")
        if not separator or not rest.startswith(":"):
            raise ValueError(f"expected [IPV6]:PORT, got {text!r}")
        value, port = host, int(rest[1:])
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        value, port = host, int(port_text)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return AllowEntry(network=ipaddress.ip_network(value, strict=True), port=port)


def unsafe_in_production(entry: AllowEntry) -> bool:
    """Whether an allowlist entry reaches loopback, unspecified, link-local or multicast space."""
    return any(
        entry.network.version == network.version and entry.network.overlaps(network)
        for network in _NEVER_IN_PRODUCTION
    )


class URLRefused(ValueError):
    """A URL is not in the strict form outbound requests accept (the reason is safe to show)."""


_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 generic syntax, with the authority ending at the first "/", "?" or "#".
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?")
_NAME_PORT = re.compile(r"([A-Za-z0-9.-]+)(?::([0-9]*))?")
_BRACKETED_PORT = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]*))?")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_DOTTED_QUAD = re.compile(r"(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
# RFC 3986 path and query characters, plus those WHATWG (and so httpx) leaves unencoded.
_PCHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/\[\]{}|^`]|%[0-9A-Fa-f]{2})*")
_QUERY_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?\[\]{}|^`]|%[0-9A-Fa-f]{2})*")
_ENCODED_DOT_OR_SLASH = re.compile("%(2e|2f|5c)", re.IGNORECASE)
_DECODED = {"2e": ".", "2f": "/", "5c": "\\"}


@dataclass(frozen=True)
class ParsedURL:
    """An http(s) URL read once, in the one reading every later step uses.

    Invariants: `scheme` is `http` or `https`; `host` is a lower-case ASCII
    DNS name, a canonical dotted-quad IPv4 address or a compressed IPv6
    address (no brackets, no zone); `port` is explicit; `path` starts with
    "/" and holds no dot segments (not even encoded ones); `path` and
    `query` have only URL characters. Nothing was dropped but a fragment.

    Attributes:
        scheme: `http` or `https`.
        host: The host as described above.
        port: The port (the scheme's default when the URL names none).
        path: The path, percent-encoding kept as written.
        query: The query without its "?" ("" when none).
    """

    scheme: str
    host: str
    port: int
    path: str
    query: str

    @property
    def literal(self) -> IPAddress | None:
        """The host as an IP address, when it is one."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def host_header(self) -> str:
        """The `Host` header value: the host, with the port when it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """`scheme://host:port`, the port always explicit."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def target(self) -> str:
        """The request target: the path and the query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def url(self) -> str:
        """The URL rebuilt from the parsed parts."""
        return f"{self.scheme}://{self.host_header}{self.target}"


def parse_url(text: str) -> ParsedURL:
    """Read an http(s) URL strictly, refusing every form two URL parsers could read apart.

    Refused: anything but printable ASCII (whitespace, control characters,
    non-ASCII), backslashes, user info (`user@host`), percent-encoding or a
    zone id in the host, host names that are not plain DNS labels (a
    trailing dot included), IPv4 addresses in any form but canonical dotted
    quad (`127.1`, `0x7f.1`, `2130706433`, `0177.0.0.1`), empty, zero,
    zero-padded or out-of-range ports, dot segments (`.`, `..`, also
    percent-encoded or between encoded slashes), and paths that start
    with `//`. Path and query keep their percent-encoding as written.

    Args:
        text: The URL.

    Returns:
        The parsed URL.

    Raises:
        URLRefused: The URL is not in that form.
    """
    if not text.isascii() or not text.isprintable() or " " in text:
        raise URLRefused("URLs may hold only printable ASCII without spaces")
    if "\\" in text:
        raise URLRefused("URLs may not hold backslashes")
    match = _URL.fullmatch(text)
    if match is None:
        raise URLRefused("Not an absolute URL")
    scheme, authority, path, query = match.groups()
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise URLRefused("Only http and https URLs are accepted")
    if "@" in authority:
        raise URLRefused("URLs with user info are not accepted")
    if "%" in authority:
        raise URLRefused("Percent-encoding and zone ids are not accepted in the host")
    host, port_text = _host_and_port(authority)
    port = _DEFAULT_PORTS[scheme]
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
            raise URLRefused("The port must be a number from 1 to 65535 without leading zeros")
        port = int(port_text)
    return ParsedURL(scheme, host, port, _checked_path(path or "/"), _checked_query(query))


def _host_and_port(authority: str) -> tuple[str, str | None]:
    bracketed = _BRACKETED_PORT.fullmatch(authority)
    if bracketed is not None:
        try:
            address = ipaddress.IPv6Address(bracketed.group(1))
        except ValueError as exc:
            raise URLRefused("Not a valid IPv6 address") from exc
        return address.compressed, bracketed.group(2)
    named = _NAME_PORT.fullmatch(authority)
    if named is None:
        raise URLRefused("The host must be a DNS name or an IP address")
    host = named.group(1).lower()
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        if not _DOTTED_QUAD.fullmatch(host) or any(int(label) > 255 for label in labels):
            raise URLRefused("IPv4 addresses must be written as four decimal numbers")
        return host, named.group(2)
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise URLRefused("The host name is not a valid DNS name")
    return host, named.group(2)


def _checked_path(path: str) -> str:
    if not path.startswith("/") or path.startswith("//"):
        raise URLRefused("The path must start with a single /")
    if not _PCHARS.fullmatch(path):
        raise URLRefused("The path holds characters URLs may not")
    for segment in path.split("/"):
        decoded = _ENCODED_DOT_OR_SLASH.sub(lambda m: _DECODED[m.group(1).lower()], segment)
        if any(part in (".", "..") for part in re.split(r"[/\\]", decoded)):
            raise URLRefused("Dot segments are not accepted in the path")
    return path


def _checked_query(query: str | None) -> str:
    if query is None:
        return ""
    if not _QUERY_CHARS.fullmatch(query):
        raise URLRefused("The query holds characters URLs may not")
    return query
