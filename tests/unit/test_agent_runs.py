"""Pure pieces of the agent code runner: schema warnings, run tokens, signatures, egress checks."""

from __future__ import annotations

import dataclasses
import time

import pytest

from shared.agents.runs import _llm_overrides, output_warnings
from shared.agents.sandbox.egress import EgressRefused, Rules, check_target
from shared.platform import auth, service
from shared.platform.errors import Unauthorized


def test_output_warnings_follow_gofannon():
    schema = {"text": "string", "count": "integer", "score": "float", "anything": "json"}

    assert output_warnings({"text": "a", "count": 1, "score": 2, "anything": None}, schema) == []
    assert output_warnings("nope", {"a": "string"}) == [
        "Output is not a dict (got str). Expected keys: ['a']."
    ]
    assert output_warnings({"text": 1, "count": True, "score": 1.5, "anything": 0}, schema) == [
        "Output 'count' is a boolean but schema declares integer.",
        "Output 'text' has type int but schema declares string.",
    ]
    assert output_warnings({"x": 1}, None) == []


def test_llm_settings_per_model_and_legacy():
    per_model = {"perModel": {"openai/gpt-4.1-mini": {"maxTokens": 10, "reasoningEffort": "low"}}}

    assert _llm_overrides(per_model) == {"openai/gpt-4.1-mini": {"max_tokens": 10}}
    assert _llm_overrides({"maxTokens": 5, "temperature": 0.5}) == {
        "*": {"max_tokens": 5, "temperature": 0.5}
    }
    assert _llm_overrides(None) == {}


def _grant(**changes):
    grant = auth.RunGrant(
        user_id="u1",
        chain=("top", "child"),
        agents=("a1",),
        expires=time.time() + 60,
        run_id="r1",
        namespaces={"notes": "read", "out": "both"},
        budget_micros=50_000,
        epoch=1234.5,
    )
    return dataclasses.replace(grant, **changes)


def test_run_token_round_trip_and_tampering():
    token = auth.issue_run_token(_grant())

    grant = auth.read_run_token(token)

    assert grant == _grant(expires=grant.expires)
    assert grant.depth == 1
    assert grant.may_use("notes", "read") and not grant.may_use("notes", "write")
    assert grant.may_use("out", "write") and not grant.may_use("secrets", "read")
    payload, _, signature = token.partition("~")
    with pytest.raises(Unauthorized):
        auth.read_run_token(payload + "~" + signature[::-1])
    with pytest.raises(Unauthorized):
        auth.read_run_token(auth.issue_run_token(_grant(expires=time.time() - 1)))
    widened = auth.issue_run_token(_grant(namespaces=None)).partition("~")[0]
    with pytest.raises(Unauthorized):
        auth.read_run_token(widened + "~" + signature)
    with pytest.raises(Unauthorized):
        auth.authenticate(f"Bearer {token}")
    assert auth.authenticate(f"Bearer {token}", allow_run=True).is_admin is False


def test_service_signatures_bind_body_and_time():
    body = b'{"a":1}'
    header = service.sign(body)

    assert service.verify(body, header)
    assert not service.verify(b'{"a":2}', header)
    assert not service.verify(body, None)
    stale = f"t={int(time.time()) - 600},v1=" + header.split("v1=")[1]
    assert not service.verify(body, stale)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/computeMetadata/v1/",
        "http://127.0.0.1:8080/",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://[::ffff:169.254.169.254]/",
        "file:///etc/passwd",
        "gopher://example.com/",
    ],
)
def test_egress_refuses_non_public_targets(url):
    with pytest.raises(EgressRefused):
        check_target("GET", url, RULES)


RULES = Rules.build("http://127.0.0.1:8000", ("http://localhost:9000",))


def test_egress_allows_callbacks_listed_origins_and_public_addresses():
    target = check_target("POST", "http://127.0.0.1:8000/agents/run-code/llm", RULES)
    assert (str(target.address), target.target) == ("127.0.0.1", "/agents/run-code/llm")
    listed = check_target("GET", "http://LOCALHOST:9000/any/path?q=1", RULES)
    assert (listed.host_header, listed.target) == ("localhost:9000", "/any/path?q=1")
    assert str(check_target("GET", "https://8.8.8.8/", RULES).address) == "8.8.8.8"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "http://127.0.0.1:8000/agents/run-code/llm"),
        ("POST", "http://127.0.0.1:8000/users/me"),
        ("POST", "http://127.0.0.1:8000/agents/run-code/llm?x=1"),
        ("POST", "http://127.0.0.1:8000/agents/run-code/llm/../../../users/me"),
        ("POST", "http://127.0.0.1:9000\\@127.0.0.1:8000/agents/run-code/llm"),
    ],
)
def test_egress_reaches_the_platform_only_at_callbacks(method, url):
    with pytest.raises(EgressRefused):
        check_target(method, url, RULES)


def test_a_platform_url_with_a_path_prefixes_its_callbacks():
    rules = Rules.build("https://api.example.com/v1/", ())

    assert "/v1/mcp/call" in rules.callbacks
    assert rules.platform == "https://api.example.com:443"


def test_egress_resolves_once_and_pins_the_connection(monkeypatch):
    import socket

    import urllib3

    from shared.platform.fetch import pinned_pool

    answers = iter(["8.8.8.8", "127.0.0.1"])  # a rebinding name: public, then loopback
    calls = []

    def rebinding(host, port, *args, **kwargs):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)

    target = check_target("GET", "https://rebind.example/x", RULES)
    pool = pinned_pool(target, urllib3.Timeout(1))

    assert calls == ["rebind.example"]
    assert (pool.host, pool.port) == ("8.8.8.8", 443)
    assert pool.conn_kw["server_hostname"] == "rebind.example"
