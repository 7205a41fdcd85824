"""The gofannon web UI's calls, replayed through the gateway.

Each case sends a body as the UI source builds it (The-AI-Alliance/gofannon
at 81e4595, `webapp/packages/webui/src/`) and checks the fields the UI reads.
The file each case comes from is named in a comment above it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import flask
import pytest
import requests

from devstack.tokens import mint_token
from shared.agents import accounts
from shared.platform.config import get_settings
from tests.conftest import UI_ORIGIN
from tests.fakes.mcp_server import McpServer, running_mcp_server
from tests.fakes.server import serving


@pytest.fixture
def ui_user(stack, unique):
    user = mint_token(f"ui-{unique}@example.com")
    return {
        "Authorization": f"Bearer {user.id_token}",
        "Content-Type": "application/json",
    }, user.uid


def poll(stack, headers, ticket_id, timeout=30.0):
    """`chatService.pollForResult`: poll until completed or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = requests.get(stack.url(f"/chat/{ticket_id}"), headers=headers, timeout=10).json()
        if data["status"] in ("completed", "failed"):
            return data
        time.sleep(0.1)
    raise AssertionError("Request timeout")


def ui_default_parameters(schema, provider):
    """`ChatPage.jsx`: every parameter with a default, top_p skipped for anthropic."""
    return {
        key: spec["default"]
        for key, spec in schema.items()
        if spec.get("default") is not None and not (key == "top_p" and provider == "anthropic")
    }


# services/chatService.js sendMessage + pollForResult, pages/ChatPage.jsx
def test_chat_as_the_ui_sends_it(stack, ui_user):
    headers, _ = ui_user
    providers = requests.get(stack.url("/providers"), headers=headers, timeout=10).json()
    schema = providers["gemini"]["models"]["gemini-2.5-flash"]["parameters"]
    body = {
        "messages": [{"role": "user", "content": "Tell me a joke"}],
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "parameters": ui_default_parameters(schema, "gemini"),
        "stream": False,
        "builtInTools": ["google_search"],
    }

    created = requests.post(stack.url("/chat"), json=body, headers=headers, timeout=10)

    assert created.status_code == 200
    data = poll(stack, headers, created.json()["ticket_id"])
    assert data["status"] == "completed"
    assert data["result"]["content"] == "echo: Tell me a joke"
    assert "thoughts" in data["result"]


# services/chatService.js: a failed send shows `errorData.detail` as the message
def test_chat_errors_read_as_text(stack, ui_user):
    headers, _ = ui_user
    streamed = {
        "messages": [{"role": "user", "content": "Hi"}],
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "parameters": {},
        "stream": True,
    }

    refused = requests.post(stack.url("/chat"), json=streamed, headers=headers, timeout=10)
    unknown = requests.post(
        stack.url("/chat"),
        json={**streamed, "stream": False, "model": "nope"},
        headers=headers,
        timeout=10,
    )
    anonymous = requests.post(stack.url("/chat"), json=streamed, timeout=10)

    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "stream"]
    assert unknown.status_code == 422
    assert anonymous.status_code == 401
    assert isinstance(anonymous.json()["detail"], str)


# services/userService.js getProfile + addUsage, components/profile/UsageInfoTab.jsx
def test_profile_has_what_the_usage_tab_reads(stack, ui_user):
    headers, uid = ui_user
    chat = {
        "messages": [{"role": "user", "content": "Hi"}],
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "parameters": {},
        "stream": False,
    }
    fresh = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()
    added = requests.post(
        stack.url("/users/me/usage"),
        json={"responseCost": 0.25, "metadata": None},
        headers=headers,
        timeout=10,
    )
    ticket = requests.post(stack.url("/chat"), json=chat, headers=headers, timeout=10).json()
    poll(stack, headers, ticket["ticket_id"])

    profile = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()

    assert fresh["_id"] == uid and fresh["usageInfo"]["usage"] == []
    assert fresh["apiKeys"]["openaiApiKey"] is None
    assert added.status_code == 200
    assert added.json()["usageInfo"]["usage"][0]["responseCost"] == 0.25
    assert profile["_id"] == uid
    assert profile["createdAt"] <= profile["updatedAt"]
    assert isinstance(profile["usageInfo"]["monthlyAllowance"], float)
    assert isinstance(profile["usageInfo"]["spendRemaining"], float)
    usage = profile["usageInfo"]["usage"]
    assert [entry["metadata"]["source"] for entry in usage] == ["chat", "client"]
    assert usage[0]["timestamp"] > usage[1]["timestamp"]
    assert usage[0]["responseCost"] > 0
    assert usage[0]["metadata"]["model"] == "gemini-2.5-flash"


def test_profile_usage_is_bounded(stack, ui_user):
    headers, _ = ui_user
    for _ in range(accounts.RECENT_USAGE + 2):
        requests.post(
            stack.url("/users/me/usage"), json={"responseCost": 0.0}, headers=headers, timeout=10
        )

    profile = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()

    assert len(profile["usageInfo"]["usage"]) == accounts.RECENT_USAGE


def ui_date_input(timestamp_ms):
    """`AdminPanel.jsx` formatDateInput then parseDateInput: the day the field shows, in ms."""
    day = datetime.fromtimestamp(timestamp_ms / 1000, UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000


# services/userService.js getAllUsers + updateUser, pages/AdminPanel.jsx
def test_admin_panel_lists_and_saves_users(stack, ui_user, unique):
    headers, uid = ui_user
    admin = mint_token(f"ui-admin-{unique}@example.com", admin=True)
    admin_headers = {"Authorization": f"Bearer {admin.id_token}", "X-Admin-Password": "x"}
    requests.get(stack.url("/users/me"), headers=headers, timeout=10)

    listed = requests.get(stack.url("/admin/users"), headers=admin_headers, timeout=10)
    user = next(u for u in listed.json() if u["_id"] == uid)
    usage = user["usageInfo"]
    updates = {
        "monthlyAllowance": float(str(usage["monthlyAllowance"])),
        "spendRemaining": 3.5,
        "allowanceResetDate": ui_date_input(usage["allowanceResetDate"]),
    }
    saved = requests.put(
        stack.url(f"/admin/users/{uid}"), json=updates, headers=admin_headers, timeout=10
    )
    cleared = requests.put(
        stack.url(f"/admin/users/{uid}"),
        json={**updates, "allowanceResetDate": 0},
        headers=admin_headers,
        timeout=10,
    )
    as_user = requests.get(
        stack.url("/admin/users"), headers={**headers, "X-Admin-Password": "x"}, timeout=10
    )

    assert listed.status_code == 200 and isinstance(listed.json(), list)
    assert user["basicInfo"]["email"] == f"ui-{unique}@example.com"
    assert usage["allowanceResetDate"] > time.time() * 1000
    assert saved.status_code == 200
    assert saved.json()["_id"] == uid
    assert saved.json()["usageInfo"]["spendRemaining"] == 3.5
    assert saved.json()["usageInfo"]["allowanceResetDate"] == updates["allowanceResetDate"]
    me = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()
    assert cleared.status_code == 200
    assert cleared.json()["usageInfo"]["allowanceResetDate"] > time.time() * 1000
    assert me["usageInfo"]["spendRemaining"] == 3.5
    assert as_user.status_code == 403
    assert isinstance(as_user.json()["detail"], str)


# components/ModelConfigDialog.jsx, pages/ChatPage.jsx (services/chatService.js getProviders)
def test_catalog_has_the_shape_the_model_dialog_reads(stack, ui_user):
    headers, _ = ui_user
    providers = requests.get(
        stack.url("/providers"), headers={**headers, "Accept": "application/json"}, timeout=10
    ).json()

    for provider, config in providers.items():
        for model, entry in config["models"].items():
            for tool in entry.get("built_in_tools", []):
                assert set(tool) >= {"id", "description"}
            for name, spec in entry["parameters"].items():
                if provider == "gofannon":
                    continue
                assert spec["type"] in ("integer", "float", "choice", "list_choice"), name
                assert isinstance(spec["mutually_exclusive_with"], list)
                if spec["type"] in ("choice", "list_choice"):
                    assert spec["choices"]
                if spec["type"] in ("integer", "float"):
                    assert spec["min"] is not None and spec["max"] is not None
            body = {
                "messages": [{"role": "user", "content": "Hi"}],
                "provider": provider,
                "model": model,
                "parameters": ui_default_parameters(entry["parameters"], provider),
                "stream": False,
            }
            if entry.get("built_in_tools"):
                body["builtInTools"] = [entry["built_in_tools"][0]["id"]]
            sent = requests.post(stack.url("/chat"), json=body, headers=headers, timeout=10)
            assert sent.status_code == 200, (provider, model, sent.text)


# The UI's dev server (http://localhost:3000) calls every service cross-origin with
# credentials mode: services/apiClient.js, services/userService.js (X-Admin-Password)
def test_cors_for_the_configured_origin(stack, ui_user):
    headers, _ = ui_user
    origin = {"Origin": UI_ORIGIN}
    preflight = requests.options(
        stack.url("/admin/users/someone"),
        headers={
            **origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type, x-admin-password",
        },
        timeout=10,
    )
    answered = requests.get(stack.url("/users/me"), headers={**headers, **origin}, timeout=10)
    refused = requests.get(stack.url("/users/me"), headers={**origin}, timeout=10)
    foreign = requests.get(
        stack.url("/users/me"), headers={**headers, "Origin": "http://evil.example"}, timeout=10
    )
    public = requests.options(
        stack.url("/rest/echo"),
        headers={**origin, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )

    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
    assert "X-Admin-Password" in preflight.headers["Access-Control-Allow-Headers"]
    assert answered.status_code == 200
    assert answered.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert answered.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in answered.headers["Vary"]
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert public.headers["Access-Control-Allow-Origin"] == UI_ORIGIN


# components/ErrorBoundary.jsx -> services/observabilityService.js logError / log
def test_client_logs_as_the_error_boundary_sends_them(stack, ui_user, caplog, unique):
    headers, _ = ui_user
    caplog.set_level(logging.DEBUG, logger="client")
    crash = {
        "eventType": "error",
        "message": f"crash {unique}",
        "level": "ERROR",
        "metadata": {"componentStack": "at Foo\n" * 5000, "stack": "Error\n", "name": "Error"},
    }
    # An Error without a message: JSON.stringify drops `message: undefined`.
    no_message = {"eventType": "error", "level": "ERROR", "metadata": {"name": "TypeError"}}
    odd_level = {"eventType": "navigation", "message": f"odd {unique}", "level": "verbose"}

    answers = [
        requests.post(stack.url("/log/client"), json=body, headers=headers, timeout=10)
        for body in (crash, no_message, {**no_message, "message": ""}, odd_level)
    ]

    assert len(json.dumps(crash)) > 20_000
    assert [answer.status_code for answer in answers] == [202, 202, 202, 202]
    levels = {r.getMessage(): r.levelno for r in caplog.records if r.name == "client"}
    assert levels[f"crash {unique}"] == logging.ERROR
    assert levels[f"odd {unique}"] == logging.INFO


ECHO = "async def run(input_dict, tools):\n    return {'outputText': input_dict['inputText']}\n"


def ui_call(stack, method, path, headers, body=None):
    return requests.request(method, stack.url(path), json=body, headers=headers, timeout=60)


# pages/AgentCreationFlow/DeployScreen.jsx (agentData) -> services/agentService.js saveAgent,
# deployAgent, getDeployment, getDeployments, undeployAgent, getAgents, getAgent, deleteAgent;
# read by pages/SavedAgentsPage.jsx, pages/DeployedApisPage.jsx, pages/ViewAgent.jsx
def test_agent_lifecycle_as_the_ui_drives_it(stack, ui_user, unique):
    headers, _ = ui_user
    name = f"ui_echo_{unique[:8]}"
    agent_data = {
        "name": name,
        "description": "Repeats its input",
        "code": ECHO,
        "docstring": "Repeats its input.",
        "friendlyName": name,
        "tools": {},
        "swaggerSpecs": [],
        "inputSchema": {"inputText": "string"},
        "outputSchema": {"outputText": "string"},
        "invokableModels": [],
        "gofannonAgents": [],
    }

    saved = ui_call(stack, "POST", "/agents", headers, agent_data)
    agent_id = saved.json()["_id"]
    deployed = ui_call(stack, "POST", f"/agents/{agent_id}/deploy", headers)
    deployment = ui_call(stack, "GET", f"/agents/{agent_id}/deployment", headers)
    listed = ui_call(stack, "GET", "/agents", headers)
    apis = ui_call(stack, "GET", "/deployments", headers)
    chain = ui_call(stack, "GET", f"/agents/{agent_id}/chain", headers)
    updated = ui_call(
        stack, "PUT", f"/agents/{agent_id}", headers, {**agent_data, "description": "Echoes"}
    )
    undeployed = ui_call(stack, "DELETE", f"/agents/{agent_id}/undeploy", headers)
    deleted = ui_call(stack, "DELETE", f"/agents/{agent_id}", headers)

    assert saved.status_code == 201, saved.text
    assert deployed.status_code in (200, 201), deployed.text
    assert deployment.json()["is_deployed"] is True
    assert deployment.json()["friendly_name"] == name
    mine = next(a for a in listed.json() if a["_id"] == agent_id)
    assert {"name", "description"} <= set(mine)
    api = next(a for a in apis.json() if a["agentId"] == agent_id)
    assert api["friendlyName"] == name and api["inputSchema"] == {"inputText": "string"}
    assert "outputSchema" in api and "description" in api
    assert chain.status_code == 200
    assert updated.status_code == 200 and updated.json()["description"] == "Echoes"
    assert undeployed.status_code in (200, 204)
    assert deleted.status_code in (200, 204)


# services/dataStoreService.js; read by pages/DataStoresPage.jsx, pages/DataStoreBrowser.jsx
def test_data_store_as_the_browser_reads_it(stack, ui_user):
    headers, _ = ui_user
    namespace, key = "ui notes", "first/key"
    record_path = (
        f"/data-store/namespaces/{quote(namespace, safe='')}/records/{quote(key, safe='')}"
    )

    put = ui_call(stack, "PUT", record_path, headers, {"value": {"a": 1}, "metadata": None})
    namespaces = ui_call(stack, "GET", "/data-store/namespaces", headers).json()
    stats = ui_call(stack, "GET", f"/data-store/namespaces/{quote(namespace, safe='')}", headers)
    records = ui_call(
        stack, "GET", f"/data-store/namespaces/{quote(namespace, safe='')}/records", headers
    )
    record = ui_call(stack, "GET", record_path, headers)
    removed = ui_call(stack, "DELETE", record_path, headers)
    cleared = ui_call(
        stack, "DELETE", f"/data-store/namespaces/{quote(namespace, safe='')}", headers
    )

    assert put.status_code == 200, put.text
    assert {"namespaces", "totalRecordCount", "totalSizeBytes"} <= set(namespaces)
    ns = next(n for n in namespaces["namespaces"] if n["namespace"] == namespace)
    assert {"recordCount", "sizeBytes", "updatedAt", "agents"} <= set(ns)
    assert {"recordCount", "sizeBytes", "updatedAt", "agents"} <= set(stats.json())
    assert [r["key"] for r in records.json()] == [key]
    assert record.json()["value"] == {"a": 1}
    assert {
        "accessCount",
        "createdAt",
        "updatedAt",
        "createdByAgent",
        "lastAccessedByAgent",
    } <= set(record.json())
    assert removed.status_code in (200, 204)
    assert cleared.status_code in (200, 204)


# pages/DemoCreationFlow/CanvasScreen.jsx generateDemoAppCode, SaveDemoScreen.jsx saveDemo /
# updateDemo (no _rev), pages/DemoAppsPage.jsx getDemos, pages/ViewDemoAppPage.jsx getDemo,
# deleteDemo (services/demoService.js)
def test_demo_flow_as_the_ui_drives_it(stack, ui_user):
    headers, _ = ui_user
    selected_apis = [
        {
            "friendlyName": "weather_agent",
            "agentId": "agent-1",
            "description": "Tells the weather of a city.",
            "inputSchema": {"city": "string"},
            "outputSchema": {"outputText": "string"},
        }
    ]
    model_config = {"provider": "gemini", "model": "gemini-2.5-flash", "parameters": {}}
    request = {"userPrompt": "A weather page", "selectedApis": selected_apis}
    stack.llm.reply = json.dumps({"html": "<p>hi</p>", "css": "p {}", "js": "1;"})
    empty = ui_call(stack, "GET", "/demos", headers)

    code = ui_call(
        stack, "POST", "/demos/generate-code", headers, {**request, "modelConfig": model_config}
    )
    demo_data = {
        "name": "Weather",
        "description": "A weather page",
        "selectedApis": selected_apis,
        "modelConfig": model_config,
        "userPrompt": "A weather page",
        "generatedCode": code.json(),
    }
    saved = ui_call(stack, "POST", "/demos", headers, demo_data)
    demo_id = saved.json()["_id"]
    listed = ui_call(stack, "GET", "/demos", headers)
    fetched = ui_call(stack, "GET", f"/demos/{demo_id}", headers)
    updated = ui_call(stack, "PUT", f"/demos/{demo_id}", headers, {**demo_data, "name": "W2"})
    deleted = ui_call(stack, "DELETE", f"/demos/{demo_id}", headers)

    assert empty.status_code == 200 and empty.json() == []
    assert code.status_code == 200, code.text
    assert code.json()["html"] == "<p>hi</p>" and "thoughts" in code.json()
    assert saved.status_code == 201, saved.text
    app = next(a for a in listed.json() if a["_id"] == demo_id)
    assert app["name"] == "Weather" and app["selectedApis"] == selected_apis
    assert app["description"] == "A weather page"
    assert fetched.json()["generatedCode"]["html"] == "<p>hi</p>"
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "W2"
    assert deleted.status_code in (200, 204)


@pytest.fixture
def tool_servers(stack) -> Iterator[tuple[McpServer, str]]:
    """An MCP server and a spec server, allowlisted for the gateway's fetches."""
    app = flask.Flask("specs")

    @app.get("/openapi.json")
    def openapi() -> flask.Response:
        return flask.jsonify(openapi="3.0.0", info={"title": "t", "version": "1"}, paths={})

    with running_mcp_server() as mcp, serving(app) as specs_url:
        ports = [*mcp.ports, int(specs_url.rsplit(":", 1)[1])]
        os.environ["FETCH_ALLOWED_ADDRESSES"] = json.dumps([f"127.0.0.1:{p}" for p in ports])
        get_settings.cache_clear()
        try:
            yield mcp, specs_url
        finally:
            os.environ.pop("FETCH_ALLOWED_ADDRESSES")
            get_settings.cache_clear()


# services/mcpService.js listTools (read by pages/AgentCreationFlow/ToolsSelectionDialog.jsx),
# services/agentService.js fetchSpecFromUrl (read by pages/ViewAgent.jsx)
def test_tools_and_specs_as_the_ui_fetches_them(stack, ui_user, tool_servers):
    headers, _ = ui_user
    mcp, specs_url = tool_servers

    tools = ui_call(
        stack, "POST", "/mcp/tools", headers, {"mcp_url": mcp.streamable_url, "auth_token": None}
    )
    spec = ui_call(stack, "POST", "/specs/fetch", headers, {"url": f"{specs_url}/openapi.json"})

    assert tools.status_code == 200, tools.text
    assert all({"name", "description"} <= set(tool) for tool in tools.json()["tools"])
    assert spec.status_code == 200, spec.text
    assert spec.json()["name"] and json.loads(spec.json()["content"])["openapi"] == "3.0.0"


def ui_sse_frames(text):
    """`agentService.runCodeInSandboxStreaming` parseFrame: `event:` and joined `data:` lines."""
    frames = []
    for raw in text.split("\n\n"):
        event, data = "message", []
        for line in raw.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            frames.append((event, json.loads("\n".join(data))))
    return frames


# pages/AgentCreationFlow/RunsScreen.jsx -> services/agentService.js runCodeInSandboxStreaming
# (llmSettings is left out when no model is invokable; the `done` frame's
# outcome, result, error, schemaWarnings and opsLog are read)
@pytest.mark.parametrize(
    "llm_settings",
    [None, {"perModel": {"gemini/gemini-2.5-flash": {"maxTokens": 256, "temperature": 0.2}}}],
)
def test_run_code_as_the_runs_screen_streams_it(stack, ui_user, llm_settings):
    headers, _ = ui_user
    body = {
        "code": ECHO,
        "inputDict": {"inputText": "hi"},
        "tools": {},
        "gofannonAgents": [],
        "outputSchema": {"outputText": "string"},
        "friendlyName": "sandbox_agent",
        **({"llmSettings": llm_settings} if llm_settings else {}),
    }

    response = requests.post(
        stack.url("/agents/run-code/stream"),
        json=body,
        headers={**headers, "Accept": "text/event-stream"},
        timeout=60,
    )

    assert response.status_code == 200, response.text
    frames = ui_sse_frames(response.text)
    assert {event for event, _ in frames[:-1]} <= {"trace"}
    event, done = frames[-1]
    assert event == "done"
    assert done["outcome"] == "success" and done["error"] is None
    assert done["result"] == {"outputText": "hi"}
    assert {"schemaWarnings", "opsLog"} <= set(done)


# pages/ViewAgent.jsx (agentConfig) -> services/agentService.js generateCode; the page
# reads code, docstring and friendlyName
def test_generate_code_with_the_view_agent_body(stack, ui_user):
    headers, _ = ui_user
    stack.llm.reply = json.dumps(
        {
            "friendlyName": "echo agent",
            "docstring": "Repeats its input.",
            "body": "return {'outputText': input_dict['inputText']}\n",
        }
    )
    agent = {"composerModelConfig": {"provider": "gemini", "model": "gemini-2.5-flash"}}
    agent_config = {
        "tools": {},
        "description": "Repeat the input",
        "inputSchema": {"inputText": "string"},
        "outputSchema": {"outputText": "string"},
        "invokableModels": [],
        "swaggerSpecs": [],
        "gofannonAgents": [],
        "builtInTools": [],
        "modelConfig": {**agent["composerModelConfig"], "parameters": {}},
    }

    response = ui_call(stack, "POST", "/agents/generate-code", headers, agent_config)

    assert response.status_code == 200, response.text
    generated = response.json()
    assert generated["code"] and generated["docstring"] == "Repeats its input."
    assert generated["friendlyName"]


def ui_preflight(stack, method, path):
    """The browser's CORS preflight before a cross-origin call from the UI's dev server."""
    return requests.options(
        stack.url(path),
        headers={
            "Origin": UI_ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "accept, authorization, content-type",
        },
        timeout=10,
    )


# components/profile/ApiKeysTab.jsx -> services/userService.js getApiKeys, updateApiKey,
# deleteApiKey (through services/apiClient.js, cross-origin from the dev server); the tab
# reads `apiKeys[`${provider.id}ApiKey`]` as "configured" and shows errors' `detail`
def test_api_keys_tab_as_the_ui_drives_it(stack, ui_user):
    headers = {**ui_user[0], "Accept": "application/json", "Origin": UI_ORIGIN}
    key = "sk-proj-a-key-typed-into-the-tab-1234"
    preflights = [
        ui_preflight(stack, method, path)
        for method, path in (
            ("GET", "/users/me/api-keys"),
            ("PUT", "/users/me/api-keys"),
            ("DELETE", "/users/me/api-keys/openai"),
        )
    ]

    empty = ui_call(stack, "GET", "/users/me/api-keys", headers)
    saved = ui_call(
        stack, "PUT", "/users/me/api-keys", headers, {"provider": "openai", "api_key": key}
    )
    loaded = ui_call(stack, "GET", "/users/me/api-keys", headers)
    refused = ui_call(
        stack, "PUT", "/users/me/api-keys", headers, {"provider": "openrouter", "api_key": key}
    )
    removed = ui_call(stack, "DELETE", "/users/me/api-keys/openai", headers)
    reloaded = ui_call(stack, "GET", "/users/me/api-keys", headers)

    for preflight in preflights:
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert "PUT" in preflights[1].headers["Access-Control-Allow-Methods"]
    assert "DELETE" in preflights[2].headers["Access-Control-Allow-Methods"]
    providers = ("openai", "anthropic", "gemini", "perplexity", "openrouter")
    assert {f"{provider}ApiKey" for provider in providers} <= set(empty.json())
    assert not any(empty.json().values())
    assert saved.status_code == 200
    assert saved.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert loaded.json()["openaiApiKey"]
    assert key[:-4] not in loaded.text + saved.text
    assert refused.status_code == 400
    assert isinstance(refused.json()["detail"], str)
    assert removed.status_code == 200
    assert not reloaded.json()["openaiApiKey"]


# services/userService.js getEffectiveApiKey -> {provider, has_key, source}
def test_effective_api_key_as_the_ui_reads_it(stack, ui_user):
    headers, _ = ui_user
    ui_call(
        stack,
        "PUT",
        "/users/me/api-keys",
        headers,
        {"provider": "anthropic", "api_key": "sk-ant-users-own-key-0123456789"},
    )

    own = ui_call(stack, "GET", "/users/me/api-keys/anthropic/effective", headers)
    platform = ui_call(stack, "GET", "/users/me/api-keys/gemini/effective", headers)
    unknown = ui_call(stack, "GET", "/users/me/api-keys/perplexity/effective", headers)

    assert own.json() == {"provider": "anthropic", "has_key": True, "source": "user"}
    assert platform.json() == {"provider": "gemini", "has_key": True, "source": "env"}
    assert unknown.json() == {"provider": "perplexity", "has_key": False, "source": None}


# pages/LoginPage.jsx -> services/authService.js fetchAuthProviders: unauthenticated,
# credentials included; `providers` empty renders the Firebase sign-in
def test_login_page_probe_offers_firebase_sign_in(stack):
    preflight = ui_preflight(stack, "GET", "/auth/providers")
    response = requests.get(
        stack.url("/auth/providers"),
        headers={"Accept": "application/json", "Origin": UI_ORIGIN},
        timeout=10,
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert response.json() == {"providers": [], "legacyFirebaseEnabled": True}
    assert preflight.status_code == 204


# services/authService.js sessionAuth._fetchMe + _buildUser (read by components/ProfileMenu.jsx:
# uid, email, displayName, providerType, workspaces, isSiteAdmin); 401 means signed out
def test_auth_me_has_the_identity_the_account_menu_reads(stack, ui_user, unique):
    headers, uid = ui_user
    admin = mint_token(f"ui-admin-{unique}@example.com", admin=True)

    me = ui_call(stack, "GET", "/auth/me", headers)
    admin_me = ui_call(stack, "GET", "/auth/me", {"Authorization": f"Bearer {admin.id_token}"})
    signed_out = requests.get(stack.url("/auth/me"), timeout=10)

    assert me.status_code == 200
    assert me.json() == {
        "uid": uid,
        "displayName": f"ui-{unique}@example.com",
        "email": f"ui-{unique}@example.com",
        "providerType": "firebase",
        "workspaces": [],
        "isSiteAdmin": False,
    }
    assert admin_me.json()["isSiteAdmin"] is True
    assert signed_out.status_code == 401


# pages/DemoCreationFlow/CanvasScreen.jsx generateDemoAppCode and pages/ViewAgent.jsx
# generateCode show a failure's `detail`: it says what the model got wrong
def test_code_generation_failures_say_what_the_model_got_wrong(stack, ui_user):
    headers, _ = ui_user
    stack.llm.reply = json.dumps({"html": "", "css": "", "js": ""})
    body = {
        "userPrompt": "A page",
        "selectedApis": [],
        "modelConfig": {"provider": "gemini", "model": "gemini-2.5-flash", "parameters": {}},
    }

    response = ui_call(stack, "POST", "/demos/generate-code", headers, body)

    assert response.status_code == 502
    assert "the field `html` was empty" in response.json()["detail"]
