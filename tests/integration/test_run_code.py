"""`POST /agents/run-code` end to end: gateway → agents → signed call → sandbox → back.

Agent code in both gofannon styles calls models through the platform's LLM
gateway (fake providers) with its run token, charged to the caller.
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
import time

import pytest
import requests

from devstack.tokens import mint_token
from shared.agents import accounts
from shared.platform import clients, service
from shared.platform.auth import Principal
from tests.integration.helpers import run_token

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs a root host")

HEADER_15363B1 = """from agent_factory.remote_mcp_client import RemoteMCPClient
import litellm
import httpx

async def run(input_dict, tools):
    mcpc = { url : RemoteMCPClient(remote_url = url) for url in tools.keys() }
    http_client = httpx.AsyncClient()
    try:
"""
HEADER_81E4595 = HEADER_15363B1.replace(
    "import litellm", "from services.llm_service import call_llm"
)
FOOTER = """
    finally:
        await http_client.aclose()
"""
TRIVIAL = "async def run(input_dict, tools):\n    return {'outputText': input_dict['inputText']}\n"


def wrap(header: str, body: str) -> str:
    return header + textwrap.indent(textwrap.dedent(body), " " * 8) + FOOTER


@pytest.fixture
def alice(stack, unique):
    user = mint_token(f"alice-{unique}@example.com")
    return {"Authorization": f"Bearer {user.id_token}"}, user.uid


def run_code(stack, headers, code, input_dict=None, **extra):
    body = {"code": code, "inputDict": input_dict or {}, "tools": {}, **extra}
    return requests.post(stack.url("/agents/run-code"), json=body, headers=headers, timeout=60)


def spend_remaining(user_id):
    principal = Principal(kind="firebase", subject=user_id, user_id=user_id)
    return accounts.get_account(principal).usageInfo.spendRemaining


def test_trivial_agent_runs(stack, alice):
    headers, _ = alice

    response = run_code(stack, headers, TRIVIAL, {"inputText": "hi"}, friendlyName="echo")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == {"outputText": "hi"}
    assert body["error"] is None
    assert [e["type"] for e in body["trace"]] == ["agent_start", "agent_end"]
    assert body["trace"][0]["agent_name"] == "echo"


def test_run_code_needs_a_token(stack):
    assert run_code(stack, {}, TRIVIAL).status_code == 401


def test_unknown_fields_are_refused(stack, alice):
    headers, _ = alice

    response = run_code(stack, headers, TRIVIAL, surprise=True)

    assert response.status_code == 422


def test_agent_failure_is_a_200_with_the_error(stack, alice):
    headers, _ = alice
    code = "async def run(input_dict, tools):\n    return input_dict['missing']\n"

    response = run_code(stack, headers, code)

    assert response.status_code == 200
    assert "KeyError: 'missing'" in response.json()["error"]
    assert response.json()["result"] is None


def test_schema_warnings_are_advisory(stack, alice):
    headers, _ = alice

    response = run_code(
        stack, headers, TRIVIAL, {"inputText": "x"}, outputSchema={"answer": "string"}
    )

    body = response.json()
    assert body["result"] == {"outputText": "x"}
    assert body["schemaWarnings"] == [
        "Missing required output keys: ['answer']",
        "Unexpected output keys not in schema: ['outputText'].",
    ]


def test_stream_sends_trace_frames_then_done(stack, alice):
    headers, _ = alice
    code = "async def run(input_dict, tools):\n    print('working')\n    return {'ok': True}\n"
    body = {"code": code, "inputDict": {}, "tools": {}}

    response = requests.post(
        stack.url("/agents/run-code/stream"), json=body, headers=headers, timeout=60
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f]
    kinds = [f.split("\n")[0] for f in frames]
    assert kinds == ["event: trace"] * (len(frames) - 1) + ["event: done"]
    traces = [json.loads(f.split("data: ", 1)[1]) for f in frames[:-1]]
    assert {"type": "stdout", "line": "working"}.items() <= traces[1].items()
    done = json.loads(frames[-1].split("data: ", 1)[1])
    assert done == {
        "outcome": "success",
        "result": {"ok": True},
        "error": None,
        "schemaWarnings": None,
        "opsLog": None,
    }


def test_gofannon_81e4595_call_llm_is_charged_to_the_caller(stack, alice):
    headers, user_id = alice
    code = wrap(
        HEADER_81E4595,
        """
        content, thoughts = await call_llm(
            provider="openai",
            model="gpt-4.1-mini",
            messages=[{"role": "user", "content": input_dict["inputText"]}],
            parameters={"temperature": 0.2},
        )
        window = get_context_window("openai", "gpt-4.1-mini")
        return {"outputText": content, "window": window, "tokens": count_tokens("abcde")}
        """,
    )
    before = spend_remaining(user_id)

    response = run_code(stack, headers, code, {"inputText": "tell me"})

    body = response.json()
    assert body["error"] is None, body["error"]
    assert body["result"]["outputText"] == "echo: tell me"
    assert body["result"]["window"] > 0
    assert body["result"]["tokens"] == 2
    assert stack.llm.calls("openai")[-1]["temperature"] == 0.2
    assert spend_remaining(user_id) < before
    ledger = clients.firestore().collection(accounts.ACCOUNTS).document(user_id)
    entries = [d.to_dict() for d in ledger.collection(accounts.LEDGER).stream()]
    assert [(e["source"], e["provider"]) for e in entries] == [("agent-run", "openai")]
    assert "llm_call" in [e["type"] for e in body["trace"]]


def test_gofannon_test_sample_with_call_llm_as_a_global(stack, alice):
    headers, _ = alice
    # gofannon 81e4595 tests/unit/test_dependencies.py, with a model of our catalog.
    code = """
async def run(input_dict, tools):
    content, _ = await call_llm(
        provider="openai",
        model="gpt-4.1-mini",
        messages=[{"role": "user", "content": input_dict["message"]}],
        parameters={},
    )
    return {"outputText": content}
"""

    body = run_code(stack, headers, code, {"message": "hello"}).json()

    assert body["error"] is None, body["error"]
    assert body["result"] == {"outputText": "echo: hello"}


def test_synchronous_run_is_refused_like_gofannon(stack, alice):
    headers, _ = alice

    body = run_code(stack, headers, "def run(input_dict, tools):\n    return {}\n").json()

    assert "Code did not define an 'async def run(input_dict, tools)' function." in body["error"]


def test_gofannon_15363b1_litellm_acompletion(stack, alice):
    headers, _ = alice
    code = wrap(
        HEADER_15363B1,
        """
        response = await litellm.acompletion(
            model="anthropic/claude-haiku-4-5",
            messages=[{"role": "user", "content": "ping"}],
        )
        return {"outputText": response.choices[0].message.content}
        """,
    )

    body = run_code(stack, headers, code).json()

    assert body["error"] is None, body["error"]
    assert body["result"]["outputText"].endswith("ping")


def test_llm_settings_override_parameters(stack, alice):
    headers, _ = alice
    code = wrap(
        HEADER_81E4595,
        """
        content, _ = await call_llm("openai", "gpt-4.1-mini",
                                    [{"role": "user", "content": "x"}], {})
        return {"outputText": content}
        """,
    )
    settings = {"perModel": {"openai/gpt-4.1-mini": {"maxTokens": 77}}}

    body = run_code(stack, headers, code, llmSettings=settings).json()

    assert body["error"] is None, body["error"]
    assert stack.llm.calls("openai")[-1]["max_completion_tokens"] == 77


def test_unknown_model_is_the_agents_error_and_not_charged(stack, alice):
    headers, user_id = alice
    code = wrap(
        HEADER_81E4595,
        """
        await call_llm("openai", "no-such-model", [{"role": "user", "content": "x"}], {})
        """,
    )
    before = spend_remaining(user_id)

    body = run_code(stack, headers, code).json()

    assert "PlatformError: 422" in body["error"]
    assert spend_remaining(user_id) == before


def test_run_tokens_only_open_run_routes(stack, alice):
    _, user_id = alice
    token = run_token(user_id)
    headers = {"Authorization": f"Bearer {token}"}

    assert requests.get(stack.url("/users/me"), headers=headers, timeout=10).status_code == 401
    assert run_code(stack, headers, TRIVIAL).status_code == 401
    llm = {
        "provider": "openai",
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": "x"}],
    }
    answered = requests.post(
        stack.url("/agents/run-code/llm"), json=llm, headers=headers, timeout=30
    )
    assert answered.status_code == 200
    assert answered.json()["content"] == "echo: x"


def test_a_user_token_cannot_call_run_routes_as_agent_code(stack, alice):
    headers, _ = alice
    body = {"agentName": "x", "inputDict": {}}

    response = requests.post(
        stack.url("/agents/run-code/call"), json=body, headers=headers, timeout=10
    )

    assert response.status_code == 403


def test_forged_or_expired_run_tokens_are_refused(stack, alice):
    _, user_id = alice
    token = run_token(user_id)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    llm = {
        "provider": "openai",
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": "x"}],
    }

    response = requests.post(
        stack.url("/agents/run-code/llm"),
        json=llm,
        headers={"Authorization": f"Bearer {forged}"},
        timeout=10,
    )

    assert response.status_code == 401


def test_sandbox_refuses_unsigned_and_stale_calls(stack):
    url = stack.url("/_functions/sandbox")
    body = json.dumps(
        {"code": TRIVIAL, "inputDict": {}, "context": {"token": "t", "agentName": "a"}}
    )

    unsigned = requests.post(url, data=body, timeout=10)
    stale = requests.post(
        url, data=body, headers={service.SIGNATURE_HEADER: "t=1000,v1=00"}, timeout=10
    )
    signed = requests.post(
        url, data=body, headers={service.SIGNATURE_HEADER: service.sign(body.encode())}, timeout=30
    )

    assert unsigned.status_code == 401
    assert stale.status_code == 401
    assert signed.status_code == 200
    done = json.loads(signed.text.splitlines()[-1])["done"]
    assert done["outcome"] == "error"
    assert "KeyError: 'inputText'" in done["error"]


def test_sandbox_is_not_routed_publicly(stack):
    response = requests.post(stack.url("/sandbox"), json={}, timeout=10)

    assert response.status_code == 404


def _agent(owner, name, code, imports=()):
    ref = clients.firestore().collection("agents").document()
    ref.set(
        {"ownerId": owner, "name": name, "code": code, "tools": {}, "gofannonAgents": list(imports)}
    )
    return ref.id


def test_gofannon_client_calls_an_imported_agent(stack, alice):
    headers, user_id = alice
    helper = _agent(
        user_id,
        "doubler",
        "async def run(input_dict, tools):\n    return {'v': input_dict['v'] * 2}\n",
    )
    code = (
        "async def run(input_dict, tools):\n"
        "    return await gofannon_client.call('doubler', {'v': 21})\n"
    )

    body = run_code(stack, headers, code, gofannonAgents=[helper], friendlyName="main").json()

    assert body["error"] is None, body["error"]
    assert body["result"] == {"v": 42}


def test_gofannon_client_refuses_agents_not_imported_or_not_owned(stack, alice, unique):
    headers, _ = alice
    stranger = _agent(f"other-{unique}", "doubler", TRIVIAL)
    code = (
        "async def run(input_dict, tools):\n    return await gofannon_client.call('doubler', {})\n"
    )

    body = run_code(stack, headers, code, gofannonAgents=[stranger]).json()

    assert "404" in body["error"]
    assert "not found or not imported" in body["error"]


def test_gofannon_client_detects_cycles(stack, alice):
    headers, user_id = alice
    calls_back = (
        "async def run(input_dict, tools):\n    return await gofannon_client.call('ping', {})\n"
    )
    ping = _agent(user_id, "ping", "placeholder")
    pong = _agent(user_id, "pong", calls_back.replace("'ping'", "'pong'"))
    ref = clients.firestore().collection("agents").document(ping)
    ref.update({"code": calls_back.replace("'ping'", "'pong'"), "gofannonAgents": [pong]})
    clients.firestore().collection("agents").document(pong).update(
        {"code": calls_back, "gofannonAgents": [ping]}
    )

    top = calls_back.replace("'ping'", "'pong'")

    body = run_code(stack, headers, top, gofannonAgents=[pong], friendlyName="ping").json()

    assert "Agent call cycle: ping -> pong -> ping" in body["error"]


def test_agent_calls_stop_at_the_depth_limit(stack, alice):
    _, user_id = alice
    chain = [f"agent{i}" for i in range(6)]
    token = run_token(user_id, tuple(chain))
    body = {"agentName": "deeper", "inputDict": {}}

    response = requests.post(
        stack.url("/agents/run-code/call"),
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )

    assert response.status_code == 403
    assert response.json()["detail"] == "Agent calls nest deeper than 5"


SLEEPER = (
    "import asyncio\n"
    "async def run(input_dict, tools):\n"
    "    print('started', flush=True)\n"
    "    await asyncio.sleep(60)\n"
    "    return {'outputText': 'too late'}\n"
)


def sse_events(response):
    """The (event, data) frames of a streamed response as they arrive (comments skipped)."""
    kind = None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield kind, json.loads(line.removeprefix("data: "))


def run_ended(caplog, outcome, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in caplog.records:
            if record.getMessage() == f"sandbox run {outcome}":
                return record
        time.sleep(0.1)
    return None


def start_sleeper(stack, headers):
    response = requests.post(
        stack.url("/agents/run-code/stream"),
        json={"code": SLEEPER, "inputDict": {}, "tools": {}},
        headers=headers,
        stream=True,
        timeout=120,
    )
    assert response.status_code == 200
    events = sse_events(response)
    kind, start = next(events)
    assert (kind, start["type"]) == ("trace", "agent_start")
    assert start["runId"] == response.headers["X-Run-Id"]
    for _kind, event in events:
        if event.get("type") == "stdout":
            break
    return response, events, start["runId"]


def test_a_streamed_run_is_cancelled_by_its_owner_only(stack, alice, caplog, unique):
    headers, _ = alice
    caplog.set_level(logging.INFO)
    mallory = mint_token(f"mallory-{unique}@example.com")
    _response, events, run_id = start_sleeper(stack, headers)
    started = time.monotonic()

    foreign = requests.post(
        stack.url(f"/agents/run-code/{run_id}/cancel"),
        headers={"Authorization": f"Bearer {mallory.id_token}"},
        timeout=10,
    )
    cancelled = requests.post(
        stack.url(f"/agents/run-code/{run_id}/cancel"), headers=headers, timeout=10
    )
    done = next(event for kind, event in events if kind == "done")
    again = requests.post(
        stack.url(f"/agents/run-code/{run_id}/cancel"), headers=headers, timeout=10
    )

    assert foreign.status_code == 404
    assert cancelled.status_code == 202
    assert cancelled.json() == {"runId": run_id, "status": "cancelling"}
    assert done["outcome"] == "error"
    assert done["error"] == "The run was cancelled"
    assert time.monotonic() - started < 15
    assert run_ended(caplog, "abandoned", timeout=10) is not None
    assert again.status_code == 404


def test_closing_the_stream_kills_the_run(stack, alice, caplog):
    headers, _ = alice
    caplog.set_level(logging.INFO)
    response, _, run_id = start_sleeper(stack, headers)
    started = time.monotonic()

    response.close()

    ended = run_ended(caplog, "abandoned", timeout=15)
    assert ended is not None
    assert time.monotonic() - started < 15
    gone = requests.post(
        stack.url(f"/agents/run-code/{run_id}/cancel"), headers=headers, timeout=10
    )
    assert gone.status_code == 404
