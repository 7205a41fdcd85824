"""Fetching OpenAPI and Swagger documents by URL (`POST /specs/fetch`).

The document comes through the guarded fetcher, at most `MAX_SPEC_BYTES`,
and is accepted only when it parses as JSON or YAML into a mapping with an
`openapi` or `swagger` field. The content is returned as fetched (agents
store it in `swaggerSpecs`), named after the URL's last path segment.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ConfigDict, Field

from shared.platform.auth import Principal
from shared.platform.config import get_settings
from shared.platform.errors import BadRequest
from shared.platform.fetch import Policy, fetch, limit_caller
from shared.platform.models import Model

# One spec must fit in a Firestore document (1 MiB) together with its agent.
MAX_SPEC_BYTES = 900_000
DEFAULT_NAME = "spec_from_url.json"


class FetchSpecRequest(Model):
    """The body of `POST /specs/fetch`."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)


class FetchedSpec(Model):
    """A fetched specification: a file name and the document's text."""

    name: str
    content: str


def fetch_spec_for(principal: Principal, request: FetchSpecRequest) -> FetchedSpec:
    """`POST /specs/fetch`: count the caller's outbound request, then fetch the document.

    Raises:
        RateLimited: The caller's outbound budget for this minute is spent.
        BadRequest: The URL may not be fetched, or the document is not a spec.
        BadGateway: The server could not be reached, failed, or sent too much.
    """
    limit_caller(principal.subject)
    return fetch_spec(request.url)


def fetch_spec(url: str, *, policy: Policy | None = None) -> FetchedSpec:
    """Fetch an OpenAPI or Swagger document.

    Args:
        url: Where the document is.
        policy: The fetch guard (defaults to the settings', at most `MAX_SPEC_BYTES`).

    Returns:
        The document's name and text.

    Raises:
        BadRequest: The URL may not be fetched, or the document is not an
            OpenAPI or Swagger document.
        BadGateway: The server could not be reached, failed, or sent too much.
    """
    limit = min(MAX_SPEC_BYTES, get_settings().fetch_max_bytes)
    policy = policy or Policy.from_settings(max_bytes=limit)
    fetched = fetch(
        url, headers={"Accept": "application/json, application/yaml, */*"}, policy=policy
    )
    try:
        content = fetched.content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest("The document is not UTF-8 text") from exc
    document = _parse(content)
    if not isinstance(document, dict) or not ({"openapi", "swagger"} & document.keys()):
        raise BadRequest("Not an OpenAPI or Swagger document (no `openapi` or `swagger` field)")
    return FetchedSpec(name=_name(url), content=content)


def _parse(content: str) -> Any:
    try:
        return json.loads(content)
    except json.JSONDecodeError:
        pass
    import yaml

    try:
        return yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise BadRequest("The document is neither JSON nor YAML") from exc


def _name(url: str) -> str:
    segment = unquote(urlsplit(url.strip()).path.rstrip("/").rsplit("/", 1)[-1])
    cleaned = "".join(ch for ch in segment if ch.isprintable() and ch not in "\\/")[:200]
    return cleaned or DEFAULT_NAME
