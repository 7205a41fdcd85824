"""The authorization matrix, generated from the route tables: a new route cannot be forgotten.

Every route that needs credentials, through the gateway, with credentials
that must never work: none, garbage, an expired Firebase token, a revoked
Firebase token, a phone session token that was logged out, and a valid demo
page capability of an admin (good only for `POST /rest/{its deployments}`,
which no sample path names). Each answer
is 401 with a JSON `detail`, before any input is looked at, and never
carries data.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from firebase_admin import auth as firebase_auth

from devstack.emulators import PROFILES_BUCKET
from devstack.openapi_build import routers
from devstack.tokens import mint_token
from shared.platform import clients
from shared.platform.config import get_settings
from tests.fakes.tokens import unsigned_jwt
from tests.integration.helpers import phone_token, random_number, sign_up, web_sign_up
from tests.integration.test_demos import demo_body
from tests.integration.test_photos import jpeg

PROTECTED = sorted(
    (route.method, route.path)
    for router in routers()
    for route in router.routes
    if route.auth not in {"none", "optional"}
)


def sample(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "sample", path)


@pytest.fixture(scope="module")
def bad_credentials(live_stack) -> dict[str, dict[str, str]]:
    project = get_settings().project_id
    user = mint_token("matrix-revoked@example.com")
    issued = int(time.time()) - 3600
    expired = unsigned_jwt(
        {
            "iss": f"https://securetoken.google.com/{project}",
            "aud": project,
            "sub": user.uid,
            "user_id": user.uid,
            "auth_time": issued,
            "iat": issued,
            "exp": issued + 60,
        }
    )
    time.sleep(1.1)  # revocation has one-second granularity
    firebase_auth.revoke_refresh_tokens(user.uid, app=clients.firebase_app())
    logged_out = phone_token(live_stack, random_number())["token"]
    requests.post(live_stack.url("/auth/logout"), json={"token": logged_out}, timeout=10)
    # A demo page's capability, valid, of an admin viewer, for a demo selecting a
    # deployment that no sample path names: refused by every route.
    admin = mint_token(f"matrix-demo-admin-{uuid.uuid4().hex[:8]}@example.com", admin=True)
    admin_headers = {"Authorization": f"Bearer {admin.id_token}"}
    demo = requests.post(
        live_stack.url("/demos"), json=demo_body(), headers=admin_headers, timeout=10
    ).json()
    capability = requests.post(
        live_stack.url(f"/demos/{demo['_id']}/capability"), headers=admin_headers, timeout=10
    ).json()["capability"]
    return {
        "none": {},
        "garbage": {"Authorization": "Bearer not-a-token-at-all"},
        "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "revoked": {"Authorization": f"Bearer {user.id_token}"},
        "logged out": {"Authorization": f"Bearer {logged_out}"},
        "demo capability": {"Authorization": f"Bearer {capability}"},
    }


def test_the_matrix_covers_every_protected_route():
    assert len(PROTECTED) > 50


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_protected_route_refuses_bad_credentials(live_stack, bad_credentials, method, path):
    for kind, headers in bad_credentials.items():
        response = requests.request(
            method, live_stack.url(sample(path)), headers=headers, json={}, timeout=10
        )

        assert response.status_code == 401, (kind, response.text)
        assert set(response.json()) == {"detail"}, kind


# Another user's credentials, and an admin's, on every protected route. A victim
# owns data of every kind the routes address; attackers (a Firebase user and a
# phone-session user, each with a profile) call every route with the victim's ids.

OWNED = "owned"  # names another user's data: the documented denial (403 or 404)
OWN = "own"  # acts on the caller's own data or on public data: documented, no victim data
ADMIN = "admin"  # admins only: 403 for users, success or a documented 4xx for admins
WEBHOOK = "webhook"  # a shared secret, never a user token: 401
SELF = "self"  # ends the caller's own account: called by throwaway callers, documented answers

VICTIM_FIRST = "Victoriaqz"
VICTIM_EMAIL_DOMAIN = "victim.example.com"
PATH_VALUES = {
    "user_id": "user_id",
    "phone_number": "phone",
    "agent_id": "agent_id",
    "demo_id": "demo_id",
    "ticket_id": "ticket_id",
    "run_id": "ticket_id",
    "session_id": "session_id",
    "referred_id": "friend_id",
    "namespace": "namespace",
    "key": "key",
    "bucket_name": "bucket",
    "blob_name": "blob",
    "friendly_name": "friendly_name",
    "provider": "provider",
    "model": "model",
}
SESSION_CONFIG = {"provider": "openai", "model": "gpt-4.1-mini", "parameters": {}}
PHOTO_FORM = {"data": {"user_id": "{user_id}"}, "files": "photo"}
PICTURE_FORM = {"data": {"user_id": "{user_id}", "image_url": "{image_url}"}}
OUTBOUND = {"json": {"url": "http://127.0.0.1:9/mcp"}}

# Every protected route, classified; a request sample where the route needs one
# (placeholders name the victim's values). A new route fails
# `test_every_protected_route_is_classified` until it is added here.
CASES: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("GET", "/debug"): (ADMIN, {}),
    ("GET", "/auth/validate"): (OWN, {}),
    ("GET", "/auth/me"): (OWN, {}),
    ("GET", "/users/check-phone"): (OWN, {"params": {"phone": "{phone}"}}),
    ("GET", "/users/check-email"): (OWN, {"params": {"email": "{email}"}}),
    ("POST", "/users/close-loop"): (
        OWNED,
        {
            "params": {"sourceId": "{user_id}", "targetId": "{friend_id}"},
            "json": {"outcome": "accepted"},
        },
    ),
    ("POST", "/users"): (OWN, {"json": {"name": {"first": "Mallory"}}}),
    ("GET", "/users/phone/{phone_number}"): (OWNED, {}),
    ("POST", "/users/{user_id:id}/augment"): (OWNED, {}),
    ("POST", "/users/{user_id:id}/referrals/{referred_id:id}/confirm"): (OWNED, {}),
    ("GET", "/users/{user_id:id}"): (OWNED, {}),
    ("PUT", "/users/{user_id:id}"): (OWNED, {"json": {"bio": "owned by mallory"}}),
    ("GET", "/providers"): (OWN, {}),
    ("GET", "/providers/{provider}"): (OWN, {}),
    ("GET", "/providers/{provider}/models"): (OWN, {}),
    ("GET", "/providers/{provider}/models/{model}"): (OWN, {}),
    ("GET", "/users/me"): (OWN, {}),
    ("DELETE", "/users/me"): (SELF, {}),
    ("GET", "/users/me/export"): (OWN, {}),
    # The admin really deletes: a user of its own, not the victim.
    ("DELETE", "/users/{user_id:id}"): (ADMIN, {"path": {"user_id": "doomed_id"}}),
    ("PUT", "/users/me/monthly-allowance"): (OWN, {"json": {"monthlyAllowance": 1}}),
    ("PUT", "/users/me/allowance-reset-date"): (OWN, {"json": {}}),
    ("PUT", "/users/me/spend-remaining"): (OWN, {"json": {}}),
    ("POST", "/users/me/usage"): (OWN, {"json": {}}),
    ("POST", "/users/me/reset-allowance"): (OWN, {}),
    ("GET", "/users/me/api-keys"): (OWN, {}),
    ("PUT", "/users/me/api-keys"): (OWN, {"json": {"provider": "acme", "api_key": "k"}}),
    ("DELETE", "/users/me/api-keys/{provider}"): (OWN, {}),
    ("GET", "/users/me/api-keys/{provider}/effective"): (OWN, {}),
    ("GET", "/admin/users"): (ADMIN, {}),
    ("PUT", "/admin/users/{user_id:id}"): (ADMIN, {"json": {}}),
    ("POST", "/chat"): (OWN, {"json": {}}),
    ("GET", "/chat/{ticket_id:id}"): (OWNED, {}),
    # Sessions are per owner: the victim's id names the caller's own session.
    ("POST", "/sessions/{session_id:id}/config"): (OWN, {"json": SESSION_CONFIG}),
    ("GET", "/sessions/{session_id:id}/config"): (OWNED, {}),
    ("DELETE", "/sessions/{session_id:id}"): (OWNED, {}),
    ("POST", "/storage/upload-photo"): (OWNED, PHOTO_FORM),
    ("POST", "/users/upload-photo"): (OWNED, PHOTO_FORM),
    ("POST", "/storage/update-profile-picture"): (OWNED, PICTURE_FORM),
    ("POST", "/users/update-profile-picture"): (OWNED, PICTURE_FORM),
    ("POST", "/users/analyze-face"): (
        OWNED,
        {"params": {"user_id": "{user_id}", "image_url": "{image_url}"}},
    ),
    ("POST", "/storage/signed-url"): (
        OWN,
        {"json": {"fileName": "a.jpg", "contentType": "image/jpeg"}},
    ),
    ("GET", "/storage/authenticated-url/{bucket_name}/{blob_name:path}"): (OWNED, {}),
    ("GET", "/storage/permanent-url/{bucket_name}/{blob_name:path}"): (OWNED, {}),
    ("POST", "/agent/webhook"): (WEBHOOK, {"json": {}}),
    ("POST", "/mcp/tools"): (OWN, OUTBOUND),
    ("POST", "/mcp/call"): (OWN, {"json": {"url": "http://127.0.0.1:9/mcp", "name": "x"}}),
    ("POST", "/specs/fetch"): (OWN, OUTBOUND),
    ("POST", "/demos/generate-code"): (OWN, {"json": {}}),
    ("POST", "/demos"): (OWN, {"json": {}}),
    ("GET", "/demos"): (OWN, {}),
    ("GET", "/demos/{demo_id:id}"): (OWNED, {}),
    ("PUT", "/demos/{demo_id:id}"): (OWNED, {"json": demo_body(name="owned")}),
    ("DELETE", "/demos/{demo_id:id}"): (OWNED, {}),
    ("GET", "/demos/{demo_id:id}/page"): (OWNED, {}),
    ("POST", "/demos/{demo_id:id}/capability"): (OWNED, {}),
    ("POST", "/agents"): (OWN, {"json": {}}),
    ("GET", "/agents"): (OWNED, {"params": {"all": "true"}}),
    ("GET", "/agents/{agent_id:id}"): (OWNED, {}),
    ("PUT", "/agents/{agent_id:id}"): (OWNED, {"json": {"name": "owned"}}),
    ("DELETE", "/agents/{agent_id:id}"): (OWNED, {}),
    ("GET", "/agents/{agent_id:id}/chain"): (OWNED, {}),
    ("POST", "/agents/generate-code"): (OWN, {"json": {}}),
    ("POST", "/agents/{agent_id:id}/deploy"): (OWNED, {}),
    ("DELETE", "/agents/{agent_id:id}/undeploy"): (OWNED, {}),
    ("GET", "/agents/{agent_id:id}/deployment"): (OWNED, {}),
    ("GET", "/deployments"): (OWN, {}),
    ("GET", "/deployments/public"): (OWN, {}),
    # The victim's deployment is private: choosing it is refused; unchoosing acts on one's own list.
    ("PUT", "/deployments/{friendly_name}/chosen"): (OWNED, {}),
    ("DELETE", "/deployments/{friendly_name}/chosen"): (OWN, {}),
    ("POST", "/rest/{friendly_name}"): (OWNED, {"json": {"inputText": "hi"}}),
    ("POST", "/agents/run-code"): (OWN, {"json": {}}),
    ("POST", "/agents/run-code/stream"): (OWN, {"json": {}}),
    # A run is cancellable only while it streams: owner-only is tested in test_run_code.py.
    ("POST", "/agents/run-code/{run_id:id}/cancel"): (OWNED, {}),
    ("POST", "/agents/run-code/llm"): (OWN, {"json": {}}),
    ("POST", "/agents/run-code/call"): (
        OWNED,
        {"json": {"agent_name": "{friendly_name}", "input_dict": {"inputText": "hi"}}},
    ),
    # Data-store namespaces are per user: the victim's namespace name is the caller's own.
    ("GET", "/data-store/namespaces"): (OWN, {}),
    ("GET", "/data-store/namespaces/{namespace}"): (OWN, {}),
    ("GET", "/data-store/namespaces/{namespace}/records"): (OWN, {}),
    ("GET", "/data-store/namespaces/{namespace}/records/{key:path}"): (OWN, {}),
    ("PUT", "/data-store/namespaces/{namespace}/records/{key:path}"): (
        OWN,
        {"json": {"value": "overwritten"}},
    ),
    ("DELETE", "/data-store/namespaces/{namespace}/records/{key:path}"): (OWN, {}),
    ("DELETE", "/data-store/namespaces/{namespace}"): (OWN, {}),
    ("POST", "/data-store/ops"): (
        OWN,
        {"json": {"op": "get", "namespace": "{namespace}", "key": "{key}"}},
    ),
}
ROUTES = {(route.method, route.path): route for router in routers() for route in router.routes}
DOCUMENT = json.loads((Path(__file__).parents[2] / "shared" / "openapi.json").read_text())


def documented(method: str, path: str) -> set[int]:
    operation = DOCUMENT["paths"][ROUTES[method, path].openapi_path][method.lower()]
    return {int(status) for status in operation["responses"]}


@dataclass
class Caller:
    headers: dict[str, str]
    user_id: str


@pytest.fixture(scope="module")
def victim(live_stack) -> dict[str, str]:
    """A user with data of every kind the routes address, and their values."""
    email = f"v{uuid.uuid4().hex[:8]}@{VICTIM_EMAIL_DOMAIN}"
    owner = web_sign_up(live_stack, email, name={"first": VICTIM_FIRST, "last": "Secretlast"})
    # Introduced to the victim: their match, and their phone number, are the victim's data too.
    friend = sign_up(live_stack, metadata={"referredBy": owner.user_id})
    doomed = sign_up(live_stack, name={"first": "Doomed"})

    def call(method: str, path: str, status: int, **options: Any) -> Any:
        response = requests.request(
            method, live_stack.url(path), headers=owner.headers, timeout=60, **options
        )
        assert response.status_code == status, (path, response.text)
        return response.json() if response.content else None

    suffix = uuid.uuid4().hex[:8]
    upload = call(
        "POST",
        "/storage/upload-photo",
        200,
        data={"user_id": owner.user_id},
        files={"file": ("v.jpg", jpeg(), "image/jpeg")},
    )
    call(
        "POST",
        "/storage/update-profile-picture",
        200,
        data={"user_id": owner.user_id, "image_url": upload["image_url"]},
    )
    agent = call(
        "POST",
        "/agents",
        201,
        json={
            "name": f"victimagent{suffix}",
            "description": "the victim's agent",
            "code": "async def run(input_dict, tools):\n    return {'outputText': 'secret'}\n",
            "friendlyName": f"victim{suffix}",
            "inputSchema": {"inputText": "string"},
            "outputSchema": {"outputText": "string"},
        },
    )
    call("POST", f"/agents/{agent['_id']}/deploy", 201)
    demo = call("POST", "/demos", 201, json=demo_body(name=f"victimdemo{suffix}"))
    ticket = call(
        "POST",
        "/chat",
        200,
        json={
            "provider": "openai",
            "model": "gpt-4.1-mini",
            "messages": [{"role": "user", "content": f"victimchat{suffix}"}],
        },
    )
    session_id = f"victimsession{suffix}"
    call("POST", f"/sessions/{session_id}/config", 200, json=SESSION_CONFIG)
    namespace, key = f"victimns{suffix}", f"victimkey{suffix}"
    call(
        "PUT",
        f"/data-store/namespaces/{namespace}/records/{key}",
        200,
        json={"value": f"victimvalue{suffix}"},
    )
    blob = upload["image_url"].split(f"/{PROFILES_BUCKET}/", 1)[1]
    return {
        "token": owner.token,
        "user_id": owner.user_id,
        "friend_id": friend.user_id,
        "doomed_id": doomed.user_id,
        "phone": friend.phone or "",
        "email": email,
        "first": VICTIM_FIRST,
        "image_url": upload["image_url"],
        "bucket": PROFILES_BUCKET,
        "blob": blob,
        "agent_id": agent["_id"],
        "friendly_name": f"victim{suffix}",
        "demo_id": demo["_id"],
        "ticket_id": ticket["ticket_id"],
        "session_id": session_id,
        "namespace": namespace,
        "key": key,
        "record": f"victimvalue{suffix}",
        "provider": "gemini",
        "model": "gemini-2.5-flash",
    }


def new_callers(live_stack) -> dict[str, Caller]:
    """A Firebase user and a phone-session user, each with a profile."""
    web = mint_token(f"mallory-{uuid.uuid4().hex[:8]}@example.com")
    created = requests.post(
        live_stack.url("/users"),
        json={"name": {"first": "Mallory"}},
        headers={"Authorization": f"Bearer {web.id_token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    phone = sign_up(live_stack, name={"first": "Trudy"})
    return {
        "firebase": Caller({"Authorization": f"Bearer {web.id_token}"}, web.uid),
        "phone session": Caller(phone.headers, phone.user_id),
    }


@pytest.fixture(scope="module")
def attackers(live_stack) -> dict[str, Caller]:
    return new_callers(live_stack)


@pytest.fixture(scope="module")
def admin(live_stack) -> Caller:
    minted = mint_token(f"admin-{uuid.uuid4().hex[:8]}@example.com", admin=True)
    return Caller({"Authorization": f"Bearer {minted.id_token}"}, minted.uid)


def fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, item in values.items():
            value = value.replace("{" + name + "}", item)
        return value
    if isinstance(value, dict):
        return {key: fill(item, values) for key, item in value.items()}
    return value


def request_as(live_stack, caller: Caller, method: str, path: str, values: dict[str, str]):
    """Call a route with the victim's values in its path and sample, as `caller`."""
    _, sample_request = CASES[method, path]
    route = ROUTES[method, path]
    url = route.openapi_path
    path_values = {**PATH_VALUES, **sample_request.get("path", {})}
    for name in route.path_params:
        url = url.replace("{" + name + "}", values[path_values[name]])
    options = fill(
        {key: item for key, item in sample_request.items() if key not in {"files", "path"}},
        values,
    )
    if sample_request.get("files"):
        options["files"] = {"file": ("p.jpg", jpeg(), "image/jpeg")}
    response = requests.request(
        method, live_stack.url(url), headers=caller.headers, timeout=60, **options
    )
    return response, url + json.dumps(options.get("params", {})) + json.dumps(
        options.get("json", options.get("data", {}))
    )


def leaked(response: requests.Response, sent: str, values: dict[str, str]) -> list[str]:
    """The victim's values in a response that the caller did not send itself."""
    secrets = [
        values[name]
        for name in (
            "user_id",
            "friend_id",
            "phone",
            "email",
            "first",
            "blob",
            "agent_id",
            "friendly_name",
            "demo_id",
            "ticket_id",
            "session_id",
            "namespace",
            "key",
            "record",
        )
    ]
    return [
        secret for secret in secrets if secret and secret not in sent and secret in response.text
    ]


def test_every_protected_route_is_classified():
    assert sorted(CASES) == PROTECTED
    names = {name for key in PROTECTED for name in ROUTES[key].path_params}
    assert names <= set(PATH_VALUES)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_another_users_data_is_refused(live_stack, victim, attackers, method, path):
    kind, _ = CASES[method, path]
    statuses = documented(method, path)
    callers = new_callers(live_stack) if kind == SELF else attackers
    for who, caller in callers.items():
        response, sent = request_as(live_stack, caller, method, path, victim)

        if kind == OWNED:
            denials = statuses & {403, 404}
            assert denials, f"{method} {path} documents no denial"
            assert response.status_code in denials, (who, response.text)
        elif kind == ADMIN:
            assert response.status_code == 403, (who, response.text)
        elif kind == WEBHOOK:
            assert response.status_code == 401, (who, response.text)
        else:
            assert response.status_code in statuses, (who, response.status_code, response.text)
        assert not leaked(response, sent, victim), (who, response.text)


def test_the_leak_check_sees_the_victims_own_data(live_stack, victim):
    owner = Caller({"Authorization": f"Bearer {victim['token']}"}, victim["user_id"])

    for path in ("/users/me", "/demos", "/users/{user_id:id}", "/agents/{agent_id:id}"):
        response, sent = request_as(live_stack, owner, "GET", path, victim)

        assert response.status_code == 200, response.text
        assert leaked(response, sent, victim), path


def test_the_victims_data_is_intact(live_stack, victim):
    headers = {"Authorization": f"Bearer {victim['token']}"}
    checks = [
        f"/users/{victim['user_id']}",
        f"/agents/{victim['agent_id']}",
        f"/agents/{victim['agent_id']}/deployment",
        f"/demos/{victim['demo_id']}",
        f"/chat/{victim['ticket_id']}",
        f"/sessions/{victim['session_id']}/config",
    ]
    for path in checks:
        response = requests.get(live_stack.url(path), headers=headers, timeout=10)
        assert response.status_code == 200, (path, response.text)
    profile = requests.get(live_stack.url(checks[0]), headers=headers, timeout=10).json()
    assert profile["name"]["first"] == VICTIM_FIRST
    assert "bio" not in profile or profile["bio"] != "owned by mallory"
    record = requests.get(
        live_stack.url(f"/data-store/namespaces/{victim['namespace']}/records/{victim['key']}"),
        headers=headers,
        timeout=10,
    )
    assert record.status_code == 200, record.text
    assert record.json()["value"] == victim["record"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_an_admin_gets_documented_answers(live_stack, victim, admin, method, path):
    kind, _ = CASES[method, path]
    if kind == SELF:
        minted = mint_token(f"admin-{uuid.uuid4().hex[:8]}@example.com", admin=True)
        admin = Caller({"Authorization": f"Bearer {minted.id_token}"}, minted.uid)
    response, _ = request_as(live_stack, admin, method, path, victim)

    assert response.status_code in documented(method, path), response.text
    if kind == ADMIN:
        assert response.status_code not in (401, 403), response.text
    if kind == WEBHOOK:
        assert response.status_code == 401, response.text
