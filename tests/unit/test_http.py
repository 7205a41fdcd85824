"""The HTTP layer: matching, validation, error translation, limits."""

from __future__ import annotations

import json

import flask
import pytest
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.test import EnvironBuilder

from shared.platform.errors import Conflict, InvalidInput, NotFound, RateLimited, Unavailable
from shared.platform.http import RequestContext, Router


class Query(BaseModel):
    limit: int = Field(default=10, ge=1, le=100)


class Body(BaseModel):
    name: str = Field(min_length=1)


class Item(BaseModel):
    item_id: int = Field(serialization_alias="itemId")
    name: str


router = Router("test")


@router.get("/items/{item_id:int}", auth="none", summary="Get", query=Query, response=Item)
def get_item(ctx: RequestContext, item_id: int, query: Query) -> Item:
    if item_id == 404:
        raise NotFound("Item not found")
    return Item(item_id=item_id, name=f"limit={query.limit}")


@router.post(
    "/items",
    auth="none",
    summary="Create",
    body=Body,
    response=Item,
    status_code=201,
    max_body_bytes=64,
)
def create_item(ctx: RequestContext, body: Body) -> dict:
    return {"item_id": 1, "name": body.name}


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


@router.post("/loose", auth="none", summary="Loose", body=Loose, max_body_bytes=1_000_000)
def create_loose(ctx: RequestContext, body: Loose) -> dict:
    return {}


@router.get("/files/{path:path}", auth="none", summary="File")
def get_file(ctx: RequestContext, path: str) -> dict:
    return {"path": path}


@router.delete("/items/{item_id:int}", auth="none", summary="Delete", status_code=204)
def delete_item(ctx: RequestContext, item_id: int) -> None:
    return None


@router.get("/boom/{kind}", auth="none", summary="Boom")
def boom(ctx: RequestContext, kind: str) -> dict:
    errors = {
        "conflict": Conflict("Already exists"),
        "rate": RateLimited("Slow down", retry_after=30),
        "down": Unavailable("Try later"),
        "input": InvalidInput("Bad phone", loc=("body", "phone")),
    }
    if kind in errors:
        raise errors[kind]
    raise RuntimeError("secret internals")


def _dependency_failure(kind: str) -> Exception:
    import requests
    from google.api_core import exceptions as google_exceptions

    refused = google_exceptions.ServiceUnavailable("connection refused")
    wrapped = ValueError("while loading the profile")
    wrapped.__cause__ = refused  # as `raise ValueError(...) from exc` leaves it
    failures: dict[str, Exception] = {
        "firestore-down": refused,
        "firestore-slow": google_exceptions.DeadlineExceeded("deadline exceeded"),
        "out-of-retries": google_exceptions.RetryError("Timeout of 10.0s exceeded", refused),
        "storage-down": requests.ConnectionError("Connection refused: 127.0.0.1:4443"),
        "storage-slow": requests.ReadTimeout("Read timed out"),
        "wrapped": wrapped,
        "not-found": google_exceptions.NotFound("no such document"),
    }
    return failures.get(kind, ValueError("a bug, not an outage"))


@router.get("/dependency/{kind}", auth="none", summary="Dependency")
def dependency(ctx: RequestContext, kind: str) -> dict:
    raise _dependency_failure(kind)


@router.get("/private", auth="user", summary="Private")
def private(ctx: RequestContext) -> dict:
    return {}


def call(method: str, path: str, **kwargs) -> flask.Response:
    request = flask.Request(EnvironBuilder(method=method, path=path, **kwargs).get_environ())
    return router.dispatch(request)


def test_typed_path_and_query_are_validated_and_response_uses_aliases():
    response = call("GET", "/items/7", query_string={"limit": "5"})

    assert response.status_code == 200
    assert response.get_json() == {"itemId": 7, "name": "limit=5"}


def test_query_validation_error_is_fastapi_shaped():
    response = call("GET", "/items/7", query_string={"limit": "0"})

    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"] == ["query", "limit"]
    assert response.get_json()["detail"][0]["type"] == "greater_than_equal"


def test_non_integer_path_parameter_does_not_match():
    assert call("GET", "/items/abc").status_code == 404


def test_body_is_validated_and_status_code_applied():
    ok = call("POST", "/items", json={"name": "x"})
    empty = call("POST", "/items", data=b"", content_type="application/json")
    wrong = call("POST", "/items", json={"name": ""})

    assert ok.status_code == 201
    assert ok.get_json() == {"itemId": 1, "name": "x"}
    assert empty.status_code == 422
    assert empty.get_json()["detail"][0]["type"] == "missing"
    assert wrong.get_json()["detail"][0]["loc"] == ["body", "name"]


def test_body_over_the_route_limit_is_413():
    response = call("POST", "/items", json={"name": "x" * 100})

    assert response.status_code == 413


def test_path_converter_spans_segments():
    assert call("GET", "/files/a/b/c.png").get_json() == {"path": "a/b/c.png"}


def test_no_content_route_has_empty_body():
    response = call("DELETE", "/items/3")

    assert response.status_code == 204
    assert response.get_data() == b""


@pytest.mark.parametrize(
    ("kind", "status"), [("conflict", 409), ("rate", 429), ("down", 503), ("input", 422)]
)
def test_domain_errors_map_to_statuses(kind, status):
    response = call("GET", f"/boom/{kind}")

    assert response.status_code == status


def test_rate_limit_sets_retry_after_and_invalid_input_is_a_list():
    assert call("GET", "/boom/rate").headers["Retry-After"] == "30"
    assert call("GET", "/boom/input").get_json() == {
        "detail": [{"loc": ["body", "phone"], "msg": "Bad phone", "type": "value_error"}]
    }


def test_unexpected_error_is_500_without_internals():
    response = call("GET", "/boom/bug")

    assert response.status_code == 500
    assert response.get_json() == {"detail": "Internal Server Error"}
    assert "secret" not in json.dumps(response.get_json())


def test_protected_route_without_token_is_401():
    response = call("GET", "/private")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_not_found_error_from_handler():
    response = call("GET", "/items/404")

    assert response.status_code == 404
    assert response.get_json() == {"detail": "Item not found"}


@pytest.mark.parametrize(
    "kind",
    [
        "firestore-down",
        "firestore-slow",
        "out-of-retries",
        "storage-down",
        "storage-slow",
        "wrapped",
    ],
)
def test_a_dependency_down_or_too_slow_is_503_with_retry_after(kind):
    response = call("GET", f"/dependency/{kind}")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json() == {"detail": "Service temporarily unavailable; retry later"}
    assert "refused" not in response.get_data(as_text=True)


@pytest.mark.parametrize("kind", ["not-found", "bug"])
def test_other_library_errors_stay_500(kind):
    response = call("GET", f"/dependency/{kind}")

    assert response.status_code == 500
    assert "Retry-After" not in response.headers


def test_every_503_carries_retry_after():
    assert call("GET", "/boom/down").headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ('{"name": ' + "1" * 5_000 + "}", ["body", "name"]),
        ('{"name": [1, -' + "9" * 30 + "]}", ["body", "name", 1]),
        ('{"name": 0.' + "1" * 100 + "}", ["body", "name"]),
        ('{"name": 1e' + "9" * 5_000 + "}", ["body", "name"]),
        ("[" * 100_000, ["body"]),
    ],
)
def test_numbers_and_nesting_json_cannot_turn_into_values_are_422(raw, loc):
    response = call("POST", "/loose", data=raw, content_type="application/json")

    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"] == loc
