"""`/mcp/tools`, `/mcp/call` and `/specs/fetch` through the gateway.

A real MCP server (the `mcp` SDK's FastMCP) and a plain HTTP server run on
127.0.0.1; `FETCH_ALLOWED_ADDRESSES` lets exactly their ports through, so
every other loopback address and port stays refused.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import flask
import pytest
import requests

from devstack.tokens import mint_token
from shared.agents import connectors
from shared.platform.addresses import parse_allow_entry
from shared.platform.config import get_settings
from shared.platform.errors import BadGateway
from shared.platform.fetch import Policy
from tests.fakes.mcp_server import McpServer, running_mcp_server
from tests.fakes.server import serving

SPEC = {"openapi": "3.1.0", "info": {"title": "Pets", "version": "1"}, "paths": {}}
SWAGGER_YAML = "swagger: '2.0'\ninfo:\n  title: Pets\n  version: '1'\npaths: {}\n"


def spec_app() -> flask.Flask:
    app = flask.Flask("specs")

    @app.get("/specs/openapi.json")
    def openapi() -> flask.Response:
        return flask.Response(json.dumps(SPEC), mimetype="application/json")

    @app.get("/specs/petstore.yaml")
    def swagger() -> flask.Response:
        return flask.Response(SWAGGER_YAML, mimetype="application/yaml")

    @app.get("/specs/not-a-spec.json")
    def other_json() -> flask.Response:
        return flask.Response('{"hello": "world"}', mimetype="application/json")

    @app.get("/specs/page.html")
    def html() -> flask.Response:
        return flask.Response("<html><body>{not: [yaml</body></html>", mimetype="text/html")

    @app.get("/specs/huge.json")
    def huge() -> flask.Response:
        padding = "x" * 1_000_000
        return flask.Response(json.dumps({"openapi": "3.1.0", "x": padding}))

    @app.get("/specs/slow.json")
    def slow() -> flask.Response:
        time.sleep(3)
        return flask.Response(json.dumps(SPEC))

    @app.get("/specs/to-private")
    def to_private() -> flask.Response:
        return flask.redirect("http://10.0.0.7/openapi.json", code=302)

    @app.get("/specs/to-metadata")
    def to_metadata() -> flask.Response:
        return flask.redirect("http://169.254.169.254/computeMetadata/v1/", code=307)

    return app


@pytest.fixture(scope="module")
def servers(live_stack) -> Iterator[tuple[McpServer, str]]:
    """The MCP and spec servers, allowlisted for the gateway's fetches (and nothing else)."""
    with running_mcp_server() as mcp, serving(spec_app()) as specs_url:
        ports = [*mcp.ports, int(specs_url.rsplit(":", 1)[1])]
        os.environ["FETCH_ALLOWED_ADDRESSES"] = json.dumps([f"127.0.0.1:{p}" for p in ports])
        get_settings.cache_clear()
        try:
            yield mcp, specs_url
        finally:
            os.environ.pop("FETCH_ALLOWED_ADDRESSES")
            get_settings.cache_clear()


@pytest.fixture
def mcp(servers, stack) -> McpServer:
    return servers[0]


@pytest.fixture
def specs_url(servers, stack) -> str:
    return servers[1]


@pytest.fixture
def headers(stack, unique) -> dict[str, str]:
    user = mint_token(f"connector-{unique}@example.com")
    return {"Authorization": f"Bearer {user.id_token}"}


def post(stack, path, body, headers):
    return requests.post(stack.url(path), json=body, headers=headers, timeout=60)


@pytest.mark.parametrize("transport", ["streamable", "sse"])
def test_lists_tools_over_both_transports(stack, mcp, headers, transport):
    url = mcp.streamable_url if transport == "streamable" else mcp.sse_url

    response = post(stack, "/mcp/tools", {"mcp_url": url}, headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mcp_url"] == url
    tools = {tool["name"]: tool for tool in body["tools"]}
    assert set(tools) == {"add", "echo", "auth_header", "fail", "sleep", "weather"}
    assert tools["add"]["description"] == "Add two integers."
    assert tools["add"]["inputSchema"]["required"] == ["a", "b"]
    assert tools["add"]["inputSchema"]["properties"]["a"]["type"] == "integer"


@pytest.mark.parametrize("transport", ["streamable", "sse"])
def test_calls_tools_and_sends_the_token(stack, mcp, headers, transport):
    url = mcp.streamable_url if transport == "streamable" else mcp.sse_url

    added = post(
        stack,
        "/mcp/call",
        {"mcp_url": url, "tool_name": "add", "arguments": {"a": 2, "b": 40}},
        headers,
    )
    token = post(
        stack,
        "/mcp/call",
        {"mcp_url": url, "auth_token": "server-secret", "tool_name": "auth_header"},
        headers,
    )
    weather = post(
        stack,
        "/mcp/call",
        {"mcp_url": url, "tool_name": "weather", "arguments": {"city": "Oslo"}},
        headers,
    )

    assert added.json() == {
        "content": [{"type": "text", "text": "42"}],
        "structured_content": {"result": 42},
        "is_error": False,
    }
    assert token.json()["content"][0]["text"] == "Bearer server-secret"
    assert weather.json()["structured_content"] == {"city": "Oslo", "celsius": 21.5}


def test_a_failing_tool_is_a_result_not_an_error_status(stack, mcp, headers):
    failed = post(
        stack,
        "/mcp/call",
        {"mcp_url": mcp.streamable_url, "tool_name": "fail", "arguments": {"message": "boom"}},
        headers,
    )
    unknown = post(
        stack, "/mcp/call", {"mcp_url": mcp.streamable_url, "tool_name": "nope"}, headers
    )

    assert failed.status_code == 200
    assert failed.json()["is_error"] is True
    assert "boom" in failed.json()["content"][0]["text"]
    assert unknown.json()["is_error"] is True


def test_the_python_client_serves_agent_code_generation(mcp, stack):
    tools = connectors.list_tools(mcp.sse_url, None)

    assert "weather" in {tool.name for tool in tools}


@pytest.mark.parametrize("transport", ["streamable", "sse"])
def test_oversized_and_slow_mcp_answers_are_cut_off(mcp, transport):
    url = mcp.streamable_url if transport == "streamable" else mcp.sse_url
    allowlist = tuple(parse_allow_entry(f"127.0.0.1:{port}") for port in mcp.ports)
    started = time.monotonic()

    with pytest.raises(BadGateway, match="sent more than 300 bytes"):
        connectors.list_tools(url, None, policy=Policy(allowlist=allowlist, max_bytes=300))
    with pytest.raises(BadGateway, match="did not answer within 1 s"):
        connectors.call_tool(
            url, None, "sleep", {"seconds": 5}, policy=Policy(allowlist=allowlist), timeout=1
        )

    assert time.monotonic() - started < 4


def test_mcp_routes_need_a_token(stack, mcp):
    for path in ("/mcp/tools", "/mcp/call", "/specs/fetch"):
        response = requests.post(stack.url(path), json={}, timeout=10)

        assert response.status_code == 401, path


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/mcp",
        "http://[::1]:9/mcp",
        "http://10.0.0.1/mcp",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9/mcp",
        "http://[::ffff:127.0.0.1]/mcp",
        "http://2130706433/mcp",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/_GET",
    ],
)
def test_ssrf_attempts_are_refused(stack, mcp, headers, url):
    tools = post(stack, "/mcp/tools", {"mcp_url": url}, headers)
    call = post(stack, "/mcp/call", {"mcp_url": url, "tool_name": "add"}, headers)
    spec = post(stack, "/specs/fetch", {"url": url}, headers)

    for response in (tools, call, spec):
        assert response.status_code == 400, response.text
        assert isinstance(response.json()["detail"], str)


def test_the_allowlisted_port_does_not_open_other_loopback_addresses(stack, mcp, headers):
    port = mcp.ports[0]

    response = post(stack, "/mcp/tools", {"mcp_url": f"http://127.0.0.2:{port}/mcp"}, headers)

    assert response.status_code == 400
    assert "loopback" in response.json()["detail"]


def test_unreachable_mcp_servers_are_bad_gateway(stack, mcp, headers, specs_url):
    port = int(specs_url.rsplit(":", 1)[1])
    wrong_path = post(
        stack, "/mcp/tools", {"mcp_url": f"{mcp.streamable_url}-nope?key=s3cret"}, headers
    )
    not_mcp = post(stack, "/mcp/tools", {"mcp_url": f"http://127.0.0.1:{port}/mcp"}, headers)
    no_host = post(stack, "/mcp/tools", {"mcp_url": "http://no-such-host.invalid/mcp"}, headers)

    assert wrong_path.status_code == 502
    assert (
        wrong_path.json()["detail"] == f"The MCP server at {mcp.streamable_url}-nope answered 404"
    )
    assert not_mcp.status_code == 502
    assert no_host.status_code == 502
    assert "Could not resolve host" in no_host.json()["detail"]


def test_fetches_openapi_and_swagger_documents(stack, specs_url, headers):
    openapi = post(stack, "/specs/fetch", {"url": f"{specs_url}/specs/openapi.json"}, headers)
    swagger = post(stack, "/specs/fetch", {"url": f"{specs_url}/specs/petstore.yaml"}, headers)

    assert openapi.json() == {"name": "openapi.json", "content": json.dumps(SPEC)}
    assert swagger.json() == {"name": "petstore.yaml", "content": SWAGGER_YAML}


@pytest.mark.parametrize("path", ["/specs/not-a-spec.json", "/specs/page.html"])
def test_documents_that_are_not_specs_are_refused(stack, specs_url, headers, path):
    response = post(stack, "/specs/fetch", {"url": f"{specs_url}{path}"}, headers)

    assert response.status_code == 400
    assert "OpenAPI" in response.json()["detail"] or "JSON nor YAML" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/specs/to-private", "/specs/to-metadata"])
def test_redirects_to_private_addresses_are_refused(stack, specs_url, headers, path):
    response = post(stack, "/specs/fetch", {"url": f"{specs_url}{path}"}, headers)

    assert response.status_code == 400
    assert "Refusing to connect" in response.json()["detail"]


def test_oversized_and_slow_specs_are_cut_off(stack, specs_url, headers):
    os.environ["FETCH_READ_TIMEOUT_SECONDS"] = "1"
    get_settings.cache_clear()
    try:
        huge = post(stack, "/specs/fetch", {"url": f"{specs_url}/specs/huge.json"}, headers)
        started = time.monotonic()
        slow = post(stack, "/specs/fetch", {"url": f"{specs_url}/specs/slow.json"}, headers)
        elapsed = time.monotonic() - started
    finally:
        os.environ.pop("FETCH_READ_TIMEOUT_SECONDS")
        get_settings.cache_clear()

    assert huge.status_code == 502
    assert "more than 900000 bytes" in huge.json()["detail"]
    assert slow.status_code == 502
    assert "did not answer within 1 s" in slow.json()["detail"]
    assert elapsed < 2.5


def test_bodies_are_validated(stack, mcp, headers):
    unknown_field = post(stack, "/mcp/tools", {"mcp_url": mcp.sse_url, "extra": 1}, headers)
    no_tool = post(stack, "/mcp/call", {"mcp_url": mcp.sse_url}, headers)

    assert unknown_field.status_code == 422
    assert no_tool.status_code == 422


def test_outbound_requests_are_limited_per_caller(stack, specs_url, headers, unique):
    body = {"url": f"{specs_url}/specs/openapi.json"}
    other = {"Authorization": f"Bearer {mint_token(f'other-{unique}@example.com').id_token}"}
    os.environ["OUTBOUND_REQUESTS_PER_MINUTE"] = "2"
    get_settings.cache_clear()
    try:
        answers = [post(stack, "/specs/fetch", body, headers) for _ in range(3)]
        refused_call = post(stack, "/mcp/call", {"mcp_url": "http://x/", "tool_name": "t"}, headers)
        others = post(stack, "/specs/fetch", body, other)
    finally:
        os.environ.pop("OUTBOUND_REQUESTS_PER_MINUTE")
        get_settings.cache_clear()

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert refused_call.status_code == 429
    assert others.status_code == 200
