"""Demo apps through the gateway: CRUD, owner scoping, code generation, the page."""

from __future__ import annotations

import html as html_escape
import json
import re
import shutil
import subprocess
import time

import flask
import pytest
import requests

from devstack.tokens import mint_token
from shared.platform import clients
from tests.fakes.server import serving

# The fake reports 1200 input and 300 output tokens for every call.
GEMINI_FLASH_COST = (1200 * 0.30 + 300 * 2.50) / 1_000_000
WEATHER_API = {
    "friendlyName": "weather_agent",
    "agentId": "agent-1",
    "description": "Tells the weather of a city.",
    "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
    "outputSchema": {"type": "object", "properties": {"outputText": {"type": "string"}}},
}
MODEL_CONFIG = {"provider": "gemini", "model": "gemini-2.5-flash", "parameters": {}}
CODE = {
    "html": '<h1 id="title">Weather</h1><p id="out">waiting</p>'
    '<script>document.body.dataset.injected = "yes"</script>'
    '<button id="go" onclick="document.body.dataset.clicked = 1">Go</button>',
    "css": "h1 { color: rgb(10, 120, 200); font-family: sans-serif; }",
    "js": 'document.getElementById("out").textContent = "module ran: " + API_BASE_URL;\n'
    'const note = "</script><script>document.body.dataset.escaped = 1</script>";',
}


def demo_body(**changes):
    return {
        "name": "Weather board",
        "description": "Shows the weather",
        "selectedApis": [WEATHER_API],
        "modelConfig": MODEL_CONFIG,
        "userPrompt": "A page that asks for a city and shows its weather.",
        "generatedCode": {**CODE, "thoughts": "thinking about it"},
        **changes,
    }


def user_headers(unique, name):
    user = mint_token(f"{name}-{unique}@example.com")
    return {"Authorization": f"Bearer {user.id_token}"}, user.uid


@pytest.fixture
def alice(stack, unique):
    return user_headers(unique, "alice")


@pytest.fixture
def bob(stack, unique):
    return user_headers(unique, "bob")


def create(stack, headers, **changes):
    response = requests.post(
        stack.url("/demos"), json=demo_body(**changes), headers=headers, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_create_list_get_update_delete(stack, alice):
    headers, _ = alice

    created = create(stack, headers)
    listed = requests.get(stack.url("/demos"), headers=headers, timeout=10)
    fetched = requests.get(stack.url(f"/demos/{created['_id']}"), headers=headers, timeout=10)
    updated = requests.put(
        stack.url(f"/demos/{created['_id']}"),
        json=demo_body(name="Weather board v2", _rev=created["_rev"]),
        headers=headers,
        timeout=10,
    )
    stale = requests.put(
        stack.url(f"/demos/{created['_id']}"),
        json=demo_body(name="lost update", _rev=created["_rev"]),
        headers=headers,
        timeout=10,
    )
    deleted = requests.delete(stack.url(f"/demos/{created['_id']}"), headers=headers, timeout=10)
    gone = requests.get(stack.url(f"/demos/{created['_id']}"), headers=headers, timeout=10)

    assert set(created) == {
        "_id",
        "_rev",
        "name",
        "description",
        "selectedApis",
        "modelConfig",
        "userPrompt",
        "generatedCode",
        "composerThoughts",
        "created_at",
        "updated_at",
    }
    assert created["_rev"].startswith("1-")
    assert created["selectedApis"] == [WEATHER_API]
    assert created["modelConfig"] == {**MODEL_CONFIG, "builtInTool": None}
    assert listed.json() == [created]
    assert fetched.json() == created
    assert updated.status_code == 200
    assert updated.json()["name"] == "Weather board v2"
    assert updated.json()["_rev"].startswith("2-")
    assert updated.json()["created_at"] == created["created_at"]
    assert updated.json()["updated_at"] > created["updated_at"]
    assert stale.status_code == 409
    assert deleted.status_code == 204
    assert gone.status_code == 404


def test_another_users_demos_are_invisible(stack, alice, bob):
    alice_headers, _ = alice
    bob_headers, _ = bob
    demo = create(stack, alice_headers)
    path = f"/demos/{demo['_id']}"

    listing = requests.get(stack.url("/demos"), headers=bob_headers, timeout=10)
    read = requests.get(stack.url(path), headers=bob_headers, timeout=10)
    page = requests.get(stack.url(f"{path}/page"), headers=bob_headers, timeout=10)
    write = requests.put(stack.url(path), json=demo_body(), headers=bob_headers, timeout=10)
    delete = requests.delete(stack.url(path), headers=bob_headers, timeout=10)

    assert listing.json() == []
    assert [r.status_code for r in (read, page, write, delete)] == [404, 404, 404, 404]
    assert requests.get(stack.url(path), headers=alice_headers, timeout=10).status_code == 200


def test_demo_routes_need_a_token(stack):
    for method, path in (("GET", "/demos"), ("POST", "/demos"), ("GET", "/demos/x/page")):
        assert requests.request(method, stack.url(path), timeout=10).status_code == 401


@pytest.mark.parametrize(
    "changes",
    [
        {"unknown": 1},
        {"name": ""},
        {"selectedApis": [{**WEATHER_API, "inputSchema": {"": 1}}]},
        {"generatedCode": {"html": "x" * 200_001}},
        {"modelConfig": {"provider": "gemini"}},
    ],
)
def test_bad_demos_are_refused(stack, alice, changes):
    headers, _ = alice

    response = requests.post(
        stack.url("/demos"), json=demo_body(**changes), headers=headers, timeout=10
    )

    assert response.status_code in (413, 422), response.text
    assert requests.get(stack.url("/demos"), headers=headers, timeout=10).json() == []


def ledger(user_id):
    usage = clients.firestore().collection("accounts").document(user_id).collection("usage")
    return [doc.to_dict() for doc in usage.stream()]


def generate(stack, headers, **changes):
    body = {
        "userPrompt": "A page that asks for a city and shows its weather.",
        "selectedApis": [WEATHER_API],
        "modelConfig": MODEL_CONFIG,
        **changes,
    }
    return requests.post(stack.url("/demos/generate-code"), json=body, headers=headers, timeout=30)


def test_generate_code_through_the_gateway_is_charged_once(stack, alice):
    headers, uid = alice
    stack.llm.reply = json.dumps({key: CODE[key] for key in ("html", "css", "js")})

    response = generate(stack, headers)

    assert response.status_code == 200, response.text
    assert response.json() == {**CODE, "thoughts": "thinking about it"}
    entries = ledger(uid)
    assert len(entries) == 1
    assert entries[0]["costMicros"] == round(GEMINI_FLASH_COST * 1e6)
    assert entries[0]["source"] == "demo-generate-code"
    sent = stack.llm.calls("gemini")[-1]
    prompt = sent["contents"][-1]["parts"][0]["text"]
    assert "POST {API_BASE_URL}/rest/weather_agent" in prompt
    assert json.dumps(WEATHER_API["inputSchema"]) in prompt
    assert "A page that asks for a city" in prompt
    assert sent["generationConfig"]["responseMimeType"] == "application/json"


def test_generate_code_accepts_fenced_json(stack, alice):
    headers, _ = alice
    stack.llm.reply = "```json\n" + json.dumps({"html": "<p>hi</p>", "css": "", "js": ""}) + "\n```"

    response = generate(stack, headers)

    assert response.json()["html"] == "<p>hi</p>"


def test_unusable_answers_are_bad_gateway_and_charged(stack, alice):
    headers, uid = alice
    stack.llm.reply = "Sure! Here is your app: <html>...</html>"

    response = generate(stack, headers)

    assert response.status_code == 502
    assert response.json() == {
        "detail": "The model did not answer with the demo's code as JSON: "
        "the answer was not a JSON object (asked 2 times)"
    }
    assert len(ledger(uid)) == 2


def test_provider_failures_charge_nothing(stack, alice):
    headers, uid = alice
    before = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()
    stack.llm.fail_status = 500

    response = generate(stack, headers)

    after = requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()
    assert response.status_code == 503
    assert ledger(uid) == []
    assert after["usageInfo"]["spendRemaining"] == before["usageInfo"]["spendRemaining"]


def test_generate_code_checks_the_model_config(stack, alice):
    headers, _ = alice

    unknown_model = generate(stack, headers, modelConfig={**MODEL_CONFIG, "model": "nope"})
    unknown_field = generate(stack, headers, extra=True)

    assert unknown_model.status_code == 422
    assert unknown_field.status_code == 422
    assert stack.llm.calls("gemini") == []


CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")


def chromium(tmp_path, *args: str) -> str:
    """Run headless Chromium (as root it needs --no-sandbox); return what it printed."""
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=800,600",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def page_of(stack, headers, demo_id):
    return requests.get(stack.url(f"/demos/{demo_id}/page"), headers=headers, timeout=10)


def test_page_is_one_document_under_a_strict_policy(stack, alice):
    headers, _ = alice
    demo = create(stack, headers)

    response = page_of(stack, headers, demo["_id"])

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert "default-src 'none'" in policy
    assert f"connect-src {stack.gateway_url}" in policy
    assert "sandbox allow-scripts" in policy and "allow-same-origin" not in policy
    assert "unsafe-eval" not in policy and "script-src 'unsafe-inline'" not in policy
    document = response.text
    assert document.count(f'nonce="{nonce}"') == 2
    assert CODE["html"] in document
    assert f"const API_BASE_URL = {json.dumps(stack.gateway_url)};" in document
    assert "<\\/script><script>document.body.dataset.escaped" in document
    assert page_of(stack, headers, demo["_id"]).headers["Content-Security-Policy"] != policy


@needs_chromium
def test_page_renders_in_chromium_with_only_its_own_scripts(stack, alice, tmp_path):
    headers, _ = alice
    demo = create(stack, headers)
    page_file = tmp_path / "demo.html"
    page_file.write_text(page_of(stack, headers, demo["_id"]).text)
    screenshot = tmp_path / "demo.png"

    dom = chromium(tmp_path, "--dump-dom", page_file.as_uri())
    chromium(tmp_path, f"--screenshot={screenshot}", page_file.as_uri())

    assert f"module ran: {stack.gateway_url}" in dom
    assert "data-injected" not in dom
    assert "data-escaped" not in dom
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Viewer:
    """How a web app shows a demo: the page (fetched with the viewer's token) in a sandboxed
    srcdoc iframe; optionally a message posted in once it has loaded (a fresh capability)."""

    def __init__(self, page: str, message: dict | None = None) -> None:
        self.page = page
        self.message = message

    def app(self) -> flask.Flask:
        app = flask.Flask("viewer")
        post = (
            f"frame.contentWindow.postMessage({json.dumps(self.message)}, '*')"
            if self.message
            else "null"
        )

        @app.get("/viewer")
        def viewer() -> str:
            return f"""<!doctype html><html><body style="margin:0">
<iframe id="demo" sandbox="allow-scripts allow-forms" style="width:780px;height:560px;border:0"
  srcdoc="{html_escape.escape(self.page)}"></iframe>
<script>
const frame = document.getElementById("demo");
frame.addEventListener("load", () => {post});
</script></body></html>"""

        return app


CALLING_CODE = {
    "html": '<h1>Weather</h1><p id="out">asking</p>',
    "css": "h1 { color: rgb(10, 120, 200); font-family: sans-serif; }",
    "js": "const response = await fetch(`${API_BASE_URL}/rest/weather_agent`, {\n"
    '  method: "POST",\n'
    '  headers: {"Content-Type": "application/json"},\n'
    '  body: JSON.stringify({city: "Oslo"}),\n'
    "});\n"
    'document.getElementById("out").textContent = (await response.json()).outputText;\n',
}
WEATHER_AGENT = (
    "async def run(input_dict, tools):\n"
    "    data_store.set('asked', {'city': input_dict['city']})\n"
    "    return {'outputText': 'Sunny in ' + input_dict['city']}\n"
)


@needs_chromium
def test_page_calls_the_deployed_agent_with_its_capability(stack, alice, tmp_path):
    headers, _ = alice
    agent = requests.post(
        stack.url("/agents"),
        json={
            "name": "weather",
            "description": "Weather",
            "code": WEATHER_AGENT,
            "friendlyName": "weather_agent",
            "dataStoreConfig": [{"namespace": "default", "access": "write"}],
        },
        headers=headers,
        timeout=10,
    ).json()
    deployed = requests.post(
        stack.url(f"/agents/{agent['_id']}/deploy"), headers=headers, timeout=10
    )
    assert deployed.status_code == 201, deployed.text
    demo = create(stack, headers, generatedCode=CALLING_CODE)
    viewer = Viewer(page_of(stack, headers, demo["_id"]).text)
    screenshot = tmp_path / "viewer.png"

    with serving(viewer.app()) as origin:
        chromium(
            tmp_path, "--virtual-time-budget=8000", f"--screenshot={screenshot}", f"{origin}/viewer"
        )

    # Headless Chromium may leave before the run's answer: wait for what the run wrote.
    deadline = time.monotonic() + 30
    while (
        record := requests.get(
            stack.url("/data-store/namespaces/default/records/asked"), headers=headers, timeout=10
        )
    ).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert record.status_code == 200, record.text
    assert record.json()["value"] == {"city": "Oslo"}
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
