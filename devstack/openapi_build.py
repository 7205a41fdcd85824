"""Build the OpenAPI document from the route tables of every deployed function."""

from __future__ import annotations

from typing import Any

from devstack.functions_index import deployed_functions, load_entry_point
from shared.platform.http import Router
from shared.platform.openapi import build_openapi

TITLE = "Series API"
VERSION = "1.0.0"


def routers() -> list[Router]:
    """Return the route table of every deployed HTTP function that has one."""
    tables = []
    for spec in deployed_functions().values():
        router = getattr(load_entry_point(spec), "router", None)
        if isinstance(router, Router):
            tables.append(router)
    return tables


def build() -> dict[str, Any]:
    """Return the OpenAPI document of the whole API."""
    return build_openapi(routers(), title=TITLE, version=VERSION)
