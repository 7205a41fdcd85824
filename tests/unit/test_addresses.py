"""Address classification and allowlist entries of the guarded fetcher."""

from __future__ import annotations

import ipaddress

import pytest

from shared.platform import clients
from shared.platform.addresses import (
    URLRefused,
    parse_allow_entry,
    parse_url,
    refusal,
    unsafe_in_production,
)
from shared.platform.config import get_settings


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("0.1.2.3", "unspecified"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.100.100.200", "carrier-grade NAT"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.0.0.192", "IETF"),
        ("192.0.2.1", "documentation"),
        ("192.168.1.1", "private"),
        ("198.18.0.1", "benchmarking"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback address (IPv4-mapped 127.0.0.1)"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("::127.0.0.1", "loopback address (IPv4-compatible 127.0.0.1)"),
        ("::10.0.0.1", "private"),
        ("64:ff9b::127.0.0.1", "loopback address (NAT64 for 127.0.0.1)"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("2002:7f00:1::", "loopback address (6to4 for 127.0.0.1)"),
        ("2002:a00:1::1", "private"),
        ("100::1", "discard"),
        ("2001::1", "IETF"),
        ("2001:db8::1", "documentation"),
        ("fc00::1", "unique-local"),
        ("fd00:ec2::254", "metadata"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("4000::1", "reserved"),
    ],
)
def test_non_public_addresses_are_refused(address, reason):
    found = refusal(ipaddress.ip_address(address))

    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "100.63.255.255",
        "100.128.0.1",
        "172.32.0.1",
        "2001:4860:4860::8888",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_unicast_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None


def test_scope_ids_do_not_hide_link_local_addresses():
    assert refusal(ipaddress.ip_address("fe80::1%eth0")) == "a link-local address"


@pytest.mark.parametrize(
    ("entry", "address", "port", "matches"),
    [
        ("127.0.0.1:8123", "127.0.0.1", 8123, True),
        ("127.0.0.1:8123", "127.0.0.1", 8124, False),
        ("127.0.0.1:8123", "127.0.0.2", 8123, False),
        ("[::1]:8123", "::1", 8123, True),
        ("[::1]:8123", "127.0.0.1", 8123, False),
        ("10.0.0.0/8", "10.9.8.7", 443, True),
        ("10.0.0.0/8", "11.0.0.1", 443, False),
        ("fd00::/8", "fd12::1", 80, True),
        ("192.168.1.5", "192.168.1.5", 1, True),
    ],
)
def test_allow_entries(entry, address, port, matches):
    assert parse_allow_entry(entry).matches(ipaddress.ip_address(address), port) is matches


@pytest.mark.parametrize("entry", ["localhost:80", "10.0.0.1/8", "[::1]", "127.0.0.1:0", "x"])
def test_malformed_allow_entries_are_rejected(entry):
    with pytest.raises(ValueError):
        parse_allow_entry(entry)


@pytest.mark.parametrize(
    ("entry", "unsafe"),
    [
        ("127.0.0.1:8000", True),
        ("0.0.0.0/0", True),
        ("169.254.169.254", True),
        ("[::1]:80", True),
        ("::/0", True),
        ("fe80::/64", True),
        ("10.0.0.0/8", False),
        ("172.16.5.4:443", False),
        ("fd12::/16", False),
    ],
)
def test_production_never_allows_loopback_link_local_or_everything(entry, unsafe):
    assert unsafe_in_production(parse_allow_entry(entry)) is unsafe


@pytest.fixture
def environment(monkeypatch):
    def apply(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        clients.reset()

    yield apply
    monkeypatch.undo()
    clients.reset()


def test_production_settings_refuse_a_loopback_allowlist(environment, monkeypatch):
    for name in (
        "FIRESTORE_EMULATOR_HOST",
        "FIREBASE_AUTH_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "CLOUD_TASKS_EMULATOR_HOST",
        "VERTEXAI_BASE_URL",
        "SIGNING_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    environment(APP_ENV="production", FETCH_ALLOWED_ADDRESSES='["10.0.0.0/8"]')
    assert [str(e.network) for e in get_settings().fetch_allowlist()] == ["10.0.0.0/8"]

    environment(FETCH_ALLOWED_ADDRESSES='["10.0.0.0/8", "127.0.0.1:8080"]')

    with pytest.raises(RuntimeError, match="FETCH_ALLOWED_ADDRESSES"):
        get_settings()


def test_malformed_allowlist_fails_at_load(environment):
    environment(FETCH_ALLOWED_ADDRESSES='["not-an-address"]')

    with pytest.raises(ValueError, match="FETCH_ALLOWED_ADDRESSES"):
        get_settings()


@pytest.mark.parametrize(
    ("url", "origin", "target"),
    [
        ("http://example.com", "http://example.com:80", "/"),
        ("HTTPS://Example.COM/a/b?c=d&e=%20#frag", "https://example.com:443", "/a/b?c=d&e=%20"),
        ("http://127.0.0.1:8000/x", "http://127.0.0.1:8000", "/x"),
        ("http://[::FFFF:127.0.0.1]:81/", "http://[::ffff:7f00:1]:81", "/"),
        ("http://xn--bcher-kva.example/", "http://xn--bcher-kva.example:80", "/"),
        ("http://a.example/p@q:r/~s", "http://a.example:80", "/p@q:r/~s"),
        (
            "http://gitlab.example/api/v4/projects/g%2Fp",
            "http://gitlab.example:80",
            "/api/v4/projects/g%2Fp",
        ),
        ("http://a.example/[x]?a[]=1&b={c}|d^e`f", "http://a.example:80", "/[x]?a[]=1&b={c}|d^e`f"),
        ("http://a.example/a..b/.c/d.", "http://a.example:80", "/a..b/.c/d."),
    ],
)
def test_urls_read_once_into_their_parts(url, origin, target):
    parsed = parse_url(url)

    assert (parsed.origin, parsed.target) == (origin, target)
    assert parse_url(parsed.url) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "http://user@example.com/",
        "http://user:pass@example.com/",
        "http://example.com\\@evil.com/",
        "http://example.com:80\\@evil.com/",
        "http://exa mple.com/",
        "http://example.com/\tx",
        "http://example.com/\nx",
        "http://bücher.example/",
        "http://%65xample.com/",
        "http://[fe80::1%25eth0]/",
        "http://[::1%eth0]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7f000001/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://127.0.0.01/",
        "http://256.0.0.1/",
        "http://1.2.3.4.5/",
        "http://example.com./",
        "http://-example.com/",
        "http://exa_mple.com/",
        "http://example.com:/",
        "http://example.com:0/",
        "http://example.com:080/",
        "http://example.com:65536/",
        "http://example.com:8a/",
        "http://example.com:1:2/",
        "http://example.com/a/../b",
        "http://example.com/a/./b",
        "http://example.com/a/%2e%2E/b",
        "http://example.com/..",
        "http://example.com/..%2f..%2fx",
        "http://example.com/a/%2e%2e%5Cb",
        "http://example.com/a%2F.%2Fb",
        "http://example.com//evil.com/",
        "http://example.com/a b",
        "http://example.com/%zz",
        "http://example.com/?a=<b>",
        "http:/example.com/",
        "http:example.com/",
        "//example.com/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "http://",
        "http://[::1/",
        "http://[example.com]/",
    ],
)
def test_urls_two_parsers_could_read_apart_are_refused(url):
    with pytest.raises(URLRefused):
        parse_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://bücher.example/ä ö/[x]?q=a b&ids[]=1&f={c}|d",
        "http://api.example/v1/items?filter=name eq 'x'&$top=5",
        "https://gitlab.example/api/v4/projects/group%2Fproject/issues",
        "http://[2001:4860:4860::8888]:8080/path?x=%41",
    ],
)
def test_urls_as_httpx_sends_them_are_accepted(url):
    import httpx

    sent = str(httpx.URL(url))

    assert parse_url(sent).url == sent
