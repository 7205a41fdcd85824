"""Saved agents and deployments: CRUD, owner scoping, `_rev` conflicts, names, `/rest` runs."""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from devstack.tokens import mint_token
from shared.agents.composer import wrap
from shared.platform import clients
from shared.platform.config import get_settings
from tests.fakes.mcp_server import running_mcp_server

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs a root host")

ECHO = "async def run(input_dict, tools):\n    return {'outputText': input_dict['inputText']}\n"


def user(unique, name, *, admin=False):
    minted = mint_token(f"{name}-{unique}@example.com", admin=admin)
    return {"Authorization": f"Bearer {minted.id_token}"}


@pytest.fixture
def alice(stack, unique):
    return user(unique, "alice")


@pytest.fixture
def bob(stack, unique):
    return user(unique, "bob")


def call(stack, method, path, headers, **kwargs):
    return requests.request(method, stack.url(path), headers=headers, timeout=60, **kwargs)


def new_agent(stack, headers, **fields):
    body = {
        "name": "echo",
        "description": "Repeats its input",
        "code": ECHO,
        "friendlyName": "echo",
        "inputSchema": {"inputText": "string"},
        "outputSchema": {"outputText": "string"},
        **fields,
    }
    response = call(stack, "POST", "/agents", headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_returns_the_agent_with_id_rev_and_times(stack, alice):
    agent = new_agent(
        stack,
        alice,
        tools={"https://mcp.example.com/mcp": ["search"]},
        swaggerSpecs=[{"name": "api.json", "content": "{}"}],
        composerModelConfig={"provider": "gemini", "model": "gemini-2.5-flash", "parameters": {}},
        dataStoreConfig=[{"namespace": "notes", "access": "read"}],
    )

    assert agent["_id"] and agent["_rev"].startswith("1-")
    assert agent["createdAt"] == agent["updatedAt"]
    assert agent["friendlyName"] == "echo"
    assert agent["tools"] == {"https://mcp.example.com/mcp": ["search"]}
    assert agent["dataStoreConfig"][0]["access"] == "read"
    assert agent["composerModelConfig"]["model"] == "gemini-2.5-flash"
    fetched = call(stack, "GET", f"/agents/{agent['_id']}", alice).json()
    assert fetched == agent


def test_agents_need_a_token_and_refuse_unknown_fields(stack, alice):
    body = {"name": "x", "code": ECHO, "surprise": 1}

    assert call(stack, "GET", "/agents", {}).status_code == 401
    assert call(stack, "POST", "/agents", alice, json=body).status_code == 422


def test_another_users_agents_are_invisible(stack, alice, bob):
    agent = new_agent(stack, alice)
    path = f"/agents/{agent['_id']}"

    assert call(stack, "GET", "/agents", bob).json() == []
    assert call(stack, "GET", path, bob).status_code == 404
    assert call(stack, "PUT", path, bob, json={"name": "mine"}).status_code == 404
    assert call(stack, "DELETE", path, bob).status_code == 404
    assert call(stack, "POST", f"{path}/deploy", bob).status_code == 404
    assert call(stack, "GET", f"{path}/chain", bob).status_code == 404
    assert [a["_id"] for a in call(stack, "GET", "/agents", alice).json()] == [agent["_id"]]


def test_admins_may_list_every_users_agents(stack, alice, bob, unique):
    agent = new_agent(stack, alice)
    admin = user(unique, "admin", admin=True)

    everyone = call(stack, "GET", "/agents?all=true", admin).json()

    assert [a["_id"] for a in everyone] == [agent["_id"]]
    assert call(stack, "GET", "/agents?all=true", bob).status_code == 403


def test_put_merges_and_keeps_creation_metadata(stack, alice):
    agent = new_agent(stack, alice)

    response = call(stack, "PUT", f"/agents/{agent['_id']}", alice, json={"description": "new"})

    updated = response.json()
    assert response.status_code == 200, response.text
    assert updated["description"] == "new"
    assert updated["code"] == ECHO
    assert updated["createdAt"] == agent["createdAt"]
    assert updated["_rev"].startswith("2-")


def test_a_stale_rev_is_a_conflict(stack, alice):
    agent = new_agent(stack, alice)
    path = f"/agents/{agent['_id']}"
    first = call(stack, "PUT", path, alice, json={"name": "a", "_rev": agent["_rev"]})

    second = call(stack, "PUT", path, alice, json={"name": "b", "_rev": agent["_rev"]})

    assert first.status_code == 200
    assert second.status_code == 409
    assert call(stack, "GET", path, alice).json()["name"] == "a"


def test_chain_lists_called_agents_tools_and_cycles(stack, alice, bob):
    strangers = new_agent(stack, bob, friendlyName="theirs")
    leaf = new_agent(stack, alice, name="leaf", tools={"https://mcp.example.com/mcp": ["t"]})
    root = new_agent(stack, alice, name="root", gofannonAgents=[leaf["_id"], strangers["_id"]])
    call(stack, "PUT", f"/agents/{leaf['_id']}", alice, json={"gofannonAgents": [root["_id"]]})

    chain = call(stack, "GET", f"/agents/{root['_id']}/chain", alice).json()

    assert chain["root"] == root["_id"]
    assert chain["nodes"][leaf["_id"]]["name"] == "leaf"
    assert chain["nodes"][strangers["_id"]]["missing"] is True
    assert chain["nodes"]["mcp:https://mcp.example.com/mcp"]["tools"] == ["t"]
    calls = {(e["from"], e["to"]): e.get("cyclic") for e in chain["edges"]}
    assert calls[(leaf["_id"], root["_id"])] is True
    assert calls[(root["_id"], leaf["_id"])] is False


def test_deploy_undeploy_and_status(stack, alice):
    agent = new_agent(stack, alice)
    path = f"/agents/{agent['_id']}"

    deployed = call(stack, "POST", f"{path}/deploy", alice)
    again = call(stack, "POST", f"{path}/deploy", alice)
    status = call(stack, "GET", f"{path}/deployment", alice).json()
    listed = call(stack, "GET", "/deployments", alice).json()
    undeployed = call(stack, "DELETE", f"{path}/undeploy", alice)

    assert deployed.status_code == 201
    assert deployed.json() == {"message": "Agent deployed successfully", "endpoint": "/rest/echo"}
    assert again.json()["message"] == "Agent is already deployed"
    assert status == {"is_deployed": True, "friendly_name": "echo", "public": False}
    assert listed == [
        {
            "friendlyName": "echo",
            "agentId": agent["_id"],
            "description": "Repeats its input",
            "inputSchema": {"inputText": "string"},
            "outputSchema": {"outputText": "string"},
        }
    ]
    assert undeployed.status_code == 204
    assert call(stack, "GET", f"{path}/deployment", alice).json()["is_deployed"] is False
    assert call(stack, "GET", "/deployments", alice).json() == []


def test_deploy_needs_a_friendly_name(stack, alice):
    agent = new_agent(stack, alice, friendlyName=None)

    response = call(stack, "POST", f"/agents/{agent['_id']}/deploy", alice)

    assert response.status_code == 400
    assert response.json() == {"detail": "Agent must have a friendly_name to be deployed."}


def test_a_name_held_by_another_agent_is_a_conflict(stack, alice, bob):
    first = new_agent(stack, alice)
    second = new_agent(stack, bob)
    assert call(stack, "POST", f"/agents/{first['_id']}/deploy", alice).status_code == 201

    response = call(stack, "POST", f"/agents/{second['_id']}/deploy", bob)

    assert response.status_code == 409
    assert "already exists for a different agent" in response.json()["detail"]
    assert call(stack, "GET", "/deployments", bob).json() == []


def test_renaming_then_redeploying_moves_the_deployment(stack, alice):
    agent = new_agent(stack, alice)
    path = f"/agents/{agent['_id']}"
    call(stack, "POST", f"{path}/deploy", alice)
    call(stack, "PUT", path, alice, json={"friendlyName": "echo2"})

    response = call(stack, "POST", f"{path}/deploy", alice)

    assert response.json()["endpoint"] == "/rest/echo2"
    names = [d["friendlyName"] for d in call(stack, "GET", "/deployments", alice).json()]
    assert names == ["echo2"]


def test_delete_also_undeploys(stack, alice, bob):
    agent = new_agent(stack, alice)
    call(stack, "POST", f"/agents/{agent['_id']}/deploy", alice)

    deleted = call(stack, "DELETE", f"/agents/{agent['_id']}", alice)

    assert deleted.status_code == 204
    assert call(stack, "GET", f"/agents/{agent['_id']}", alice).status_code == 404
    assert call(stack, "GET", "/deployments", alice).json() == []
    reuse = new_agent(stack, bob)
    assert call(stack, "POST", f"/agents/{reuse['_id']}/deploy", bob).status_code == 201


def test_rest_answers_cors_preflights(stack):
    response = requests.options(
        stack.url("/rest/echo"),
        headers={
            "Origin": "null",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=10,
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_rest_of_an_unknown_name_is_404_with_cors(stack, alice):
    response = call(stack, "POST", "/rest/nothing", {**alice, "Origin": "null"}, json={})

    assert response.status_code == 404
    assert response.json() == {"detail": "No deployed agent found with that name."}
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("name", ["__reserved__", "a.b", "a%20b"])
def test_rest_of_names_no_agent_may_hold_is_404(stack, alice, name):
    response = call(stack, "POST", f"/rest/{name}", alice, json={})

    assert response.status_code == 404


def test_rest_needs_a_token(stack):
    assert call(stack, "POST", "/rest/echo", {}, json={}).status_code == 401


def test_private_deployments_are_for_their_owner(stack, alice, bob):
    agent = new_agent(stack, alice)
    call(stack, "POST", f"/agents/{agent['_id']}/deploy", alice)

    response = call(stack, "POST", "/rest/echo", bob, json={"inputText": "hi"})

    assert response.status_code == 404
    assert call(stack, "GET", "/deployments", bob).json() == []


@needs_root
def test_a_deployed_agent_runs_through_rest(stack, alice):
    agent = new_agent(stack, alice)
    call(stack, "POST", f"/agents/{agent['_id']}/deploy", alice)

    response = call(stack, "POST", "/rest/echo", alice, json={"inputText": "hello"})

    assert response.status_code == 200, response.text
    assert response.json() == {"outputText": "hello"}


@needs_root
def test_public_deployments_run_for_everyone_signed_in(stack, alice, bob):
    agent = new_agent(stack, alice)
    call(stack, "POST", f"/agents/{agent['_id']}/deploy?public=true", alice)

    response = call(stack, "POST", "/rest/echo", bob, json={"inputText": "hey"})
    unchosen = call(stack, "GET", "/deployments", bob).json()
    call(stack, "PUT", "/deployments/echo/chosen", bob)

    assert response.json() == {"outputText": "hey"}
    assert unchosen == []
    assert [d["friendlyName"] for d in call(stack, "GET", "/deployments", bob).json()] == ["echo"]


@needs_root
def test_an_agent_failure_is_a_bad_gateway_with_its_error(stack, alice):
    agent = new_agent(stack, alice)
    call(stack, "POST", f"/agents/{agent['_id']}/deploy", alice)

    response = call(stack, "POST", "/rest/echo", alice, json={"other": 1})

    assert response.status_code == 502
    assert response.json() == {"detail": "The agent failed: KeyError: 'inputText'"}


def test_deployments_the_caller_may_call_are_provider_gofannon(stack, alice, bob):
    agent = new_agent(stack, alice)
    call(stack, "POST", f"/agents/{agent['_id']}/deploy", alice)

    mine = call(stack, "GET", "/providers", alice).json()
    theirs = call(stack, "GET", "/providers", bob).json()

    assert mine["gofannon"]["models"] == {
        "echo": {
            "id": agent["_id"],
            "description": "Repeats its input",
            "parameters": {
                "inputText": {"type": "string", "description": "inputText", "default": ""}
            },
        }
    }
    assert "gemini" in mine
    assert "gofannon" not in theirs


def chat(stack, headers, model, text="hello"):
    body = {
        "provider": "gofannon",
        "model": model,
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": text},
        ],
    }
    return call(stack, "POST", "/chat", headers, json=body)


def test_chat_with_an_unknown_deployment_is_refused(stack, alice):
    response = chat(stack, alice, "nothing")

    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "No deployed agent found with that name."


def wait_for_ticket(stack, headers, ticket_id):
    deadline = time.monotonic() + 60
    while True:
        ticket = call(stack, "GET", f"/chat/{ticket_id}", headers).json()
        if ticket["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return ticket
        time.sleep(0.2)


@needs_root
def test_a_deployed_agent_answers_a_chat(stack, alice):
    agent = new_agent(stack, alice)
    call(stack, "POST", f"/agents/{agent['_id']}/deploy", alice)

    created = chat(stack, alice, "echo", "what did I say?")
    ticket = wait_for_ticket(stack, alice, created.json()["ticket_id"])

    assert created.status_code == 200, created.text
    assert ticket["status"] == "completed", ticket
    assert ticket["result"]["content"] == "what did I say?"
    assert ticket["result"]["model"] == "echo"
    assert ticket["result"]["cost"] == 0


GENERATED = {
    "friendlyName": "Weather Reporter",
    "docstring": "Reports the weather of a city.",
    "body": "```python\nif len(input_dict) > 5:\n    return {}\n"
    "return {'outputText': input_dict['inputText'] + '!'}\n```",
}


@pytest.fixture(scope="module")
def mcp(live_stack):
    """The fake MCP server, allowlisted for the gateway's fetches (and nothing else)."""
    with running_mcp_server() as server:
        addresses = [f"127.0.0.1:{port}" for port in server.ports]
        os.environ["FETCH_ALLOWED_ADDRESSES"] = json.dumps(addresses)
        get_settings.cache_clear()
        try:
            yield server
        finally:
            os.environ.pop("FETCH_ALLOWED_ADDRESSES")
            get_settings.cache_clear()


def test_generate_code_builds_the_prompt_and_is_charged_once(stack, mcp, unique):
    minted = mint_token(f"composer-{unique}@example.com")
    headers = {"Authorization": f"Bearer {minted.id_token}"}
    helper = new_agent(stack, headers, name="helper", docstring="helper(x) -> y")
    stack.llm.reply = json.dumps(GENERATED)
    body = {
        "description": "Tell me the weather",
        "tools": {mcp.streamable_url: ["weather"]},
        "inputSchema": {"inputText": "string"},
        "outputSchema": {"outputText": "string"},
        "modelConfig": {"provider": "gemini", "model": "gemini-2.5-flash", "parameters": {}},
        "invokableModels": [{"provider": "openai", "model": "gpt-4.1-mini", "parameters": {}}],
        "swaggerSpecs": [{"name": "pets.json", "content": '{"openapi": "3.1.0"}'}],
        "gofannonAgents": [helper["_id"]],
        "builtInTools": [],
    }

    response = call(stack, "POST", "/agents/generate-code", headers, json=body)

    assert response.status_code == 200, response.text
    generated = response.json()
    assert generated["friendlyName"] == "weather_reporter"
    assert generated["docstring"] == "Reports the weather of a city."
    assert generated["code"].startswith("from agent_factory.remote_mcp_client import")
    assert "        return {'outputText': input_dict['inputText'] + '!'}\n" in generated["code"]
    assert "```" not in generated["code"]
    sent = json.dumps(stack.llm.calls("gemini"))
    assert len(stack.llm.calls("gemini")) == 1
    for expected in ("weather", "Tell me the weather", "pets.json", "helper(x) -> y"):
        assert expected in sent
    assert "openai/gpt-4.1-mini" in sent
    assert "echo" not in json.loads(sent)[0]["systemInstruction"]["parts"][0]["text"]
    usage = clients.firestore().collection("accounts").document(minted.uid).collection("usage")
    entries = [doc.to_dict() for doc in usage.stream()]
    assert [entry["source"] for entry in entries] == ["agent-generate-code"]


def test_an_unusable_composer_answer_is_a_bad_gateway(stack, alice):
    stack.llm.reply = "Here is your code: print('hi')"
    body = {
        "description": "Anything",
        "modelConfig": {"provider": "gemini", "model": "gemini-2.5-flash", "parameters": {}},
    }

    response = call(stack, "POST", "/agents/generate-code", alice, json=body)

    assert response.status_code == 502
    assert response.json() == {
        "detail": "The model did not answer with the agent's code as JSON: "
        "the answer was not a JSON object (asked 2 times)"
    }


@needs_root
def test_generated_code_runs_in_the_sandbox(stack, alice):
    body = {"code": wrap(GENERATED["body"]), "inputDict": {"inputText": "hi"}, "tools": {}}

    response = call(stack, "POST", "/agents/run-code", alice, json=body)

    assert response.json()["error"] is None, response.json()["error"]
    assert response.json()["result"] == {"outputText": "hi!"}


@needs_root
def test_admins_may_call_private_deployments(stack, alice, unique):
    agent = new_agent(stack, alice)
    call(stack, "POST", f"/agents/{agent['_id']}/deploy", alice)
    admin = user(unique, "admin", admin=True)

    response = call(stack, "POST", "/rest/echo", admin, json={"inputText": "sudo"})

    assert response.json() == {"outputText": "sudo"}
