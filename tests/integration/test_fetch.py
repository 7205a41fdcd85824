"""The guarded fetcher against real HTTP servers on 127.0.0.1.

Each test allowlists exactly the test server's endpoint; every other
loopback address and port stays refused.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import flask
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

from shared.platform.addresses import parse_allow_entry
from shared.platform.errors import BadGateway, BadRequest
from shared.platform.fetch import Policy, fetch
from tests.fakes.server import serving


def upstream() -> flask.Flask:
    app = flask.Flask("upstream")

    @app.get("/doc")
    def doc() -> flask.Response:
        return flask.Response('{"openapi": "3.1.0"}', mimetype="application/json")

    @app.get("/host")
    def host() -> str:
        return flask.request.headers.get("Host", "")

    @app.get("/redirect")
    def redirect() -> flask.Response:
        return flask.redirect(flask.request.args["to"], code=int(flask.request.args["code"]))

    @app.get("/loop")
    def loop() -> flask.Response:
        return flask.redirect("/loop", code=302)

    @app.get("/missing")
    def missing() -> tuple[str, int]:
        return "nope", 404

    @app.get("/big")
    def big() -> flask.Response:
        return flask.Response(b"x" * 5000, mimetype="application/octet-stream")

    @app.get("/big-stream")
    def big_stream() -> flask.Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(1000):
                yield b"y" * 1000

        return flask.Response(chunks(), mimetype="application/octet-stream")

    @app.get("/slow")
    def slow() -> str:
        time.sleep(float(flask.request.args["seconds"]))
        return "late"

    @app.get("/drip")
    def drip() -> flask.Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                time.sleep(0.1)
                yield b"."

        return flask.Response(chunks(), mimetype="text/plain")

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serving(upstream()) as url:
        yield url


def allowing(url: str, **limits: float) -> Policy:
    port = url.rsplit(":", 1)[1]
    entries = (parse_allow_entry(f"127.0.0.1:{port}"), parse_allow_entry(f"[::1]:{port}"))
    values: dict[str, float] = {
        "max_bytes": 1_000_000,
        "connect_timeout": 2,
        "read_timeout": 2,
        "total_timeout": 10,
        "max_redirects": 3,
        **limits,
    }
    return Policy(
        allowlist=entries,
        max_bytes=int(values["max_bytes"]),
        connect_timeout=values["connect_timeout"],
        read_timeout=values["read_timeout"],
        total_timeout=values["total_timeout"],
        max_redirects=int(values["max_redirects"]),
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fetches_from_an_allowlisted_endpoint(server):
    fetched = fetch(f"{server}/doc", policy=allowing(server))

    assert fetched.status == 200
    assert fetched.content == b'{"openapi": "3.1.0"}'
    assert fetched.content_type.startswith("application/json")


def test_the_allowlist_covers_one_endpoint_only(server):
    other = closed_port()

    with pytest.raises(BadRequest, match="loopback"):
        fetch(f"http://127.0.0.1:{other}/doc", policy=allowing(server))
    with pytest.raises(BadRequest, match="loopback"):
        fetch(f"{server}/doc", policy=Policy())


def test_connects_to_the_checked_address_keeping_the_host_name(server):
    port = server.rsplit(":", 1)[1]

    fetched = fetch(f"http://localhost:{port}/host", policy=allowing(server))

    assert fetched.content == f"localhost:{port}".encode()


def test_follows_redirects_within_allowed_addresses(server):
    for code in (301, 302, 303, 307, 308):
        fetched = fetch(f"{server}/redirect?to=/doc&code={code}", policy=allowing(server))

        assert fetched.url == f"{server}/doc"
        assert fetched.content == b'{"openapi": "3.1.0"}'


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:1/",
        "http://localhost:1/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
    ],
)
def test_redirects_to_refused_addresses_are_refused(server, location):
    with pytest.raises(BadRequest):
        fetch(f"{server}/redirect?to={location}&code=302", policy=allowing(server))


def test_redirect_loops_stop(server):
    with pytest.raises(BadGateway, match="Too many redirects"):
        fetch(f"{server}/loop", policy=allowing(server))


def test_error_statuses_are_bad_gateway(server):
    with pytest.raises(BadGateway, match="answered 404"):
        fetch(f"{server}/missing", policy=allowing(server))


def test_oversized_bodies_are_cut_off(server):
    with pytest.raises(BadGateway, match="more than 4096 bytes"):
        fetch(f"{server}/big", policy=allowing(server, max_bytes=4096))
    with pytest.raises(BadGateway, match="more than 100000 bytes"):
        fetch(f"{server}/big-stream", policy=allowing(server, max_bytes=100_000))


def test_slow_answers_time_out(server):
    started = time.monotonic()

    with pytest.raises(BadGateway, match=r"did not answer within 0\.5 s"):
        fetch(f"{server}/slow?seconds=3", policy=allowing(server, read_timeout=0.5))

    assert time.monotonic() - started < 2.5


def test_a_trickle_stops_at_the_total_deadline(server):
    started = time.monotonic()

    with pytest.raises(BadGateway, match="took longer than 1 s"):
        fetch(f"{server}/drip", policy=allowing(server, read_timeout=1, total_timeout=1))

    assert time.monotonic() - started < 3


def test_unreachable_servers_are_bad_gateway(server):
    port = closed_port()
    policy = Policy(allowlist=(parse_allow_entry(f"127.0.0.1:{port}"),))

    with pytest.raises(BadGateway, match="Could not connect"):
        fetch(f"http://127.0.0.1:{port}/", policy=policy)
    with pytest.raises(BadGateway, match="Could not resolve"):
        fetch("http://no-such-host.invalid/", policy=policy)


def self_signed(directory: Path, host: str) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_tls_uses_the_host_name_for_sni_and_verifies_the_certificate(tmp_path):
    context = self_signed(tmp_path, "localhost")
    names: list[str | None] = []
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    tls = make_server("127.0.0.1", 0, upstream(), threaded=True, ssl_context=context)
    thread = threading.Thread(target=tls.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://localhost:{tls.server_port}"

        with pytest.raises(BadGateway, match="failed TLS verification"):
            fetch(f"{url}/doc", policy=allowing(url))
    finally:
        tls.shutdown()
        thread.join(timeout=5)

    assert names == ["localhost"]
