"""The meta endpoints, through the gateway and the Hosting rewrites."""

from __future__ import annotations

import json
import logging

import requests
from openapi_spec_validator import validate

from devstack.tokens import mint_token
from shared.platform.logging import CloudJsonFormatter


def test_root_names_the_service(stack):
    response = requests.get(stack.url("/"), timeout=10)

    assert response.status_code == 200
    assert response.json()["service"] == "series-api"
    assert response.headers["X-Request-Id"]


def test_health_reports_firestore_reachable(stack):
    response = requests.get(stack.url("/health"), timeout=10)

    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "service": "series-api", "firestore": True}


def test_request_id_is_echoed_when_well_formed(stack):
    response = requests.get(
        stack.url("/health"), headers={"X-Request-Id": "req-12345678"}, timeout=10
    )

    assert response.headers["X-Request-Id"] == "req-12345678"


def test_debug_requires_a_token(stack):
    response = requests.get(stack.url("/debug"), timeout=10)

    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_debug_refuses_non_admin(stack, unique):
    user = mint_token(f"{unique}@example.com")

    response = requests.get(
        stack.url("/debug"), headers={"Authorization": f"Bearer {user.id_token}"}, timeout=10
    )

    assert response.status_code == 403
    assert response.json() == {"detail": "Admin access required"}


def test_debug_for_admin_shows_config_but_no_secret(stack, unique):
    user = mint_token(f"{unique}@example.com", admin=True)

    response = requests.get(
        stack.url("/debug"), headers={"Authorization": f"Bearer {user.id_token}"}, timeout=10
    )

    assert response.status_code == 200
    body = response.json()
    assert body["projectId"] == stack.env["GOOGLE_CLOUD_PROJECT"]
    assert body["emulators"]["firestore"] == stack.env["FIRESTORE_EMULATOR_HOST"]
    assert "local-task-signing-secret" not in response.text
    assert user.id_token not in response.text


def test_client_log_is_accepted_and_enriched(stack, unique, caplog):
    caplog.set_level(logging.INFO, logger="client")
    event = {"eventType": "page_error", "message": f"boom {unique}", "level": "WARN"}

    response = requests.post(
        stack.url("/log/client"), json=event, headers={"User-Agent": "pytest-agent"}, timeout=10
    )

    assert response.status_code == 202
    assert response.json() == {"status": "logged"}
    record = next(r for r in caplog.records if r.getMessage() == f"boom {unique}")
    assert record.levelno == logging.WARNING
    assert record.clientMetadata["user_agent"] == "pytest-agent"
    assert record.clientMetadata["client_host"] == "127.0.0.1"


def test_client_log_rejects_oversized_body(stack):
    event = {"eventType": "x", "message": "m", "metadata": {"blob": "a" * 200_000}}

    response = requests.post(stack.url("/log/client"), json=event, timeout=10)

    assert response.status_code == 413
    assert "detail" in response.json()


def test_client_log_rejects_malformed_json(stack):
    response = requests.post(
        stack.url("/log/client"),
        data=b'{"eventType": ',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_client_log_validation_errors_are_fastapi_shaped(stack):
    response = requests.post(
        stack.url("/log/client"),
        json={"eventType": "", "level": "L" * 33, "extra": 1},
        timeout=10,
    )

    assert response.status_code == 422
    problems = {tuple(item["loc"]): item["type"] for item in response.json()["detail"]}
    assert problems == {
        ("body", "eventType"): "string_too_short",
        ("body", "level"): "string_too_long",
        ("body", "extra"): "extra_forbidden",
    }


def test_client_log_with_invalid_token_is_refused(stack):
    response = requests.post(
        stack.url("/log/client"),
        json={"eventType": "x", "message": "m"},
        headers={"Authorization": "Bearer nonsense"},
        timeout=10,
    )

    assert response.status_code == 401


def test_openapi_document_is_valid_3_1(stack):
    response = requests.get(stack.url("/openapi.json"), timeout=10)

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    validate(document)
    assert "/health" in document["paths"]


def test_docs_page_and_its_assets_are_served_locally(stack):
    page = requests.get(stack.url("/docs"), timeout=10)

    assert page.status_code == 200
    assert "/openapi.json" in page.text
    assert "https://" not in page.text
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"):
        response = requests.get(stack.url(f"/docs/{asset}"), timeout=10)
        assert response.status_code == 200, asset
        assert len(response.content) > 1000


def test_unknown_docs_asset_is_404(stack):
    response = requests.get(stack.url("/docs/..%2Fconfig.py"), timeout=10)

    assert response.status_code == 404


def test_unknown_path_and_wrong_method(stack):
    missing = requests.get(stack.url("/nothing-here"), timeout=10)
    wrong_method = requests.delete(stack.url("/health"), timeout=10)

    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET"


def test_logs_are_json_lines_without_tokens(stack, unique, caplog):
    caplog.set_level(logging.INFO)
    user = mint_token(f"{unique}@example.com")

    requests.get(
        stack.url("/debug"), headers={"Authorization": f"Bearer {user.id_token}"}, timeout=10
    )

    formatter = CloudJsonFormatter()
    lines = [json.loads(formatter.format(record)) for record in caplog.records]
    access = [line for line in lines if line.get("httpRequest", {}).get("requestUrl") == "/debug"]
    assert access[0]["severity"] == "INFO"
    assert access[0]["httpRequest"]["status"] == 403
    assert access[0]["requestId"]
    assert user.id_token not in json.dumps(lines)
