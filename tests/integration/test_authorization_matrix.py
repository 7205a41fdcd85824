"""The authorization matrix, generated from the route tables: a new route cannot be forgotten.

Every route that needs credentials, through the gateway, with credentials
that must never work: none, garbage, an expired Firebase token, a revoked
Firebase token, and a phone session token that was logged out. Each answer
is 401 with a JSON `detail`, before any input is looked at, and never
carries data.
"""

from __future__ import annotations

import re
import time

import pytest
import requests
from firebase_admin import auth as firebase_auth

from devstack.openapi_build import routers
from devstack.tokens import mint_token
from shared.platform import clients
from shared.platform.config import get_settings
from tests.fakes.tokens import unsigned_jwt
from tests.integration.helpers import phone_token, random_number

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
    return {
        "none": {},
        "garbage": {"Authorization": "Bearer not-a-token-at-all"},
        "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "expired": {"Authorization": f"Bearer {expired}"},
        "revoked": {"Authorization": f"Bearer {user.id_token}"},
        "logged out": {"Authorization": f"Bearer {logged_out}"},
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
