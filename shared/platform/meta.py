"""Service metadata: identity, health, debug information, client logs, API docs."""

from __future__ import annotations

import importlib.util
import logging
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field

from shared.platform import clients
from shared.platform.auth import Principal
from shared.platform.config import get_settings
from shared.platform.errors import NotFound
from shared.platform.models import Model

client_logger = logging.getLogger("client")

OPENAPI_PATH = Path(__file__).parent.parent / "openapi.json"
# The web UI's error boundary sends stacks and component trees; kept under Cloud
# Logging's 256 KiB entry limit with room for the enrichment.
CLIENT_LOG_MAX_BYTES = 200_000
SWAGGER_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true}});
</script>
</body>
</html>
"""


class RootInfo(Model):
    """The heartbeat payload of `GET /`."""

    message: str
    service: str
    version: str


class Health(Model):
    """The readiness payload of `GET /health`."""

    status: Literal["healthy", "degraded"]
    service: str
    firestore: bool = Field(description="Whether Firestore answered a read just now.")


class DebugInfo(Model):
    """Deployment facts for admins; never a secret."""

    service: str
    version: str
    revision: str | None
    environment: str
    project_id: str = Field(serialization_alias="projectId")
    llm_providers: list[str] = Field(serialization_alias="llmProviders")
    emulators: dict[str, str]


class ClientLogEntry(Model):
    """A log event sent by the web app."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    event_type: str = Field(alias="eventType", min_length=1, max_length=100)
    message: str = Field(default="", max_length=CLIENT_LOG_MAX_BYTES)
    level: str = Field(
        default="INFO",
        max_length=32,
        description="DEBUG, INFO, WARN(ING), ERROR, CRITICAL (any case); others log as INFO",
    )
    metadata: dict[str, Any] | None = None


class ClientLogAccepted(Model):
    """The answer to a client log event."""

    status: Literal["logged"] = "logged"


def root_info() -> RootInfo:
    """Describe the service."""
    settings = get_settings()
    return RootInfo(
        message=f"{settings.service_name} is running",
        service=settings.service_name,
        version=settings.version,
    )


def health() -> Health:
    """Report liveness and whether Firestore is reachable (one cheap read)."""
    from google.api_core import exceptions as google_exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        clients.firestore().collection("_health").document("ping").get(timeout=3)
        reachable = True
    except (google_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError):
        reachable = False
    return Health(
        status="healthy" if reachable else "degraded",
        service=get_settings().service_name,
        firestore=reachable,
    )


def debug_info() -> DebugInfo:
    """Collect deployment facts for admins (no secrets, only which providers are set)."""
    settings = get_settings()
    return DebugInfo(
        service=settings.service_name,
        version=settings.version,
        revision=settings.revision,
        environment=settings.app_env,
        project_id=settings.project_id,
        llm_providers=settings.configured_llm_providers(),
        emulators=settings.emulator_hosts(),
    )


def log_client_event(
    entry: ClientLogEntry,
    *,
    client_host: str | None,
    user_agent: str | None,
    principal: Principal | None,
) -> ClientLogAccepted:
    """Write a client's event as one structured log line.

    Args:
        entry: The validated event.
        client_host: The caller's address.
        user_agent: The caller's user agent.
        principal: The caller, when a valid token came with the event.

    Returns:
        The acknowledgement.
    """
    metadata = dict(entry.metadata or {})
    metadata.update(client_host=client_host, user_agent=user_agent)
    client_logger.log(
        _LEVELS.get(entry.level.upper(), logging.INFO),
        entry.message,
        extra={
            "eventType": entry.event_type,
            "clientLevel": entry.level,
            "clientMetadata": metadata,
            "userId": principal.user_id if principal else None,
        },
    )
    return ClientLogAccepted()


@cache
def openapi_document() -> bytes:
    """Return the generated OpenAPI document (built by `make openapi`)."""
    return OPENAPI_PATH.read_bytes()


def docs_page() -> str:
    """Return the Swagger UI page, which loads its assets from `/docs/`."""
    return _DOCS_PAGE.format(title=get_settings().service_name)


def swagger_asset(name: str) -> tuple[bytes, str]:
    """Return one Swagger UI static file shipped by the `swagger-ui-py` package.

    Args:
        name: The file name under `/docs/`.

    Returns:
        The bytes and their content type.

    Raises:
        NotFound: The name is not one of the served assets.
    """
    if name not in SWAGGER_ASSETS:
        raise NotFound("Not Found")
    return _swagger_static_dir().joinpath(name).read_bytes(), SWAGGER_ASSETS[name]


@cache
def _swagger_static_dir() -> Path:
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("API docs assets are not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"
