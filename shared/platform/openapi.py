"""OpenAPI 3.1 generation from route tables and their pydantic models."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from shared.platform.http import ErrorBody, HTTPValidationError, Route, Router

_REF = "#/components/schemas/{model}"
_STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    503: "Service Unavailable",
}

_RETRY_AFTER = {
    "description": "Seconds after which the same request may succeed.",
    "schema": {"type": "integer"},
}


def build_openapi(routers: Iterable[Router], *, title: str, version: str) -> dict[str, Any]:
    """Build the OpenAPI document for every route of the given routers.

    Args:
        routers: The route tables, in the order their paths should appear.
        title: The API title.
        version: The API version.

    Returns:
        An OpenAPI 3.1 document as plain data.
    """
    routes = [route for router in routers for route in router.routes]
    inputs: list[tuple[tuple[str, str], JsonSchemaMode, TypeAdapter[Any]]] = [
        (("error", "body"), "serialization", TypeAdapter(ErrorBody)),
        (("error", "validation"), "serialization", TypeAdapter(HTTPValidationError)),
    ]
    for route in routes:
        if route.body is not None:
            inputs.append(((route.operation_id, "body"), "validation", TypeAdapter(route.body)))
        if route.form is not None:
            inputs.append(((route.operation_id, "form"), "validation", TypeAdapter(route.form)))
        if route.response is not None:
            inputs.append(
                ((route.operation_id, "response"), "serialization", TypeAdapter(route.response))
            )
    schemas, definitions = TypeAdapter.json_schemas(inputs, by_alias=True, ref_template=_REF)
    by_key = {key: schema for (key, _mode), schema in schemas.items()}
    defs = definitions.get("$defs", {})
    for key, schema in by_key.items():
        if key[1] == "form" and "$ref" in schema:
            # Inlined, so the file fields can join its properties (a closed object
            # under `allOf` would forbid them).
            by_key[key] = dict(defs[schema["$ref"].rsplit("/", 1)[-1]])

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, by_key)
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Firebase ID token or a phone session token.",
                },
                "webhook": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "The secret the sending service was configured with.",
                },
            },
        },
    }


def _error_statuses(route: Route) -> dict[int, str]:
    """The error statuses a route documents: its own, and those the HTTP layer adds."""
    errors = dict(route.responses)
    if route.auth != "none":
        errors.setdefault(401, _STATUS_TEXT[401])
    if route.auth == "admin":
        errors.setdefault(403, _STATUS_TEXT[403])
    if route.path_params:
        # A path parameter outside its converter's pattern matches no route.
        errors.setdefault(404, _STATUS_TEXT[404])
    if route.body or route.form:
        errors.setdefault(413, _STATUS_TEXT[413])
        errors.setdefault(415, _STATUS_TEXT[415])
    # Firestore or Cloud Storage down or out of time: any route may meet it.
    errors.setdefault(503, _STATUS_TEXT[503])
    return errors


def _operation(route: Route, schemas: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": list(route.tags),
    }
    if route.handler.__doc__:
        operation["description"] = route.handler.__doc__.strip().split("\n\n")[0]
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer" if python_type is int else "string"},
        }
        for name, python_type in route.path_params.items()
    ]
    if route.query is not None:
        parameters.extend(_query_parameters(route.query))
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas[(route.operation_id, "body")]}},
        }
    if route.form is not None:
        fields = schemas[(route.operation_id, "form")]
        files = {name: {"type": "string", "format": "binary"} for name in route.files}
        form_schema: dict[str, Any] = {
            **fields,
            "properties": {**fields.get("properties", {}), **files},
            "required": [*fields.get("required", []), *route.files],
        }
        media = "multipart/form-data" if route.files else "application/x-www-form-urlencoded"
        operation["requestBody"] = {"required": True, "content": {media: {"schema": form_schema}}}
    success: dict[str, Any] = {"description": "Successful Response"}
    if route.response is not None:
        success["content"] = {
            "application/json": {"schema": schemas[(route.operation_id, "response")]}
        }
    responses: dict[str, Any] = {str(route.status_code): success}
    for status, description in sorted(_error_statuses(route).items()):
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": schemas[("error", "body")]}},
        }
        if status in (429, 503):
            responses[str(status)]["headers"] = {"Retry-After": _RETRY_AFTER}
    if route.body or route.form or route.query or route.path_params:
        responses["422"] = {
            "description": "Validation Error",
            "content": {"application/json": {"schema": schemas[("error", "validation")]}},
        }
    operation["responses"] = responses
    if route.auth == "optional":
        operation["security"] = [{}, {"bearer": []}]
    elif route.auth == "webhook":
        operation["security"] = [{"webhook": []}]
    elif route.auth != "none":
        operation["security"] = [{"bearer": []}]
    return operation


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, ref_template=_REF)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k != "description"},
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema.get("properties", {}).items()
    ]
