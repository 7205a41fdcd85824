"""The `meta` function: root, health, debug, client logs, OpenAPI and API docs."""

from __future__ import annotations

import flask

from shared.platform import meta as service
from shared.platform.http import RequestContext, Router, http_function

router = Router("meta")


@router.get("/", auth="none", summary="Root", response=service.RootInfo)
def root(ctx: RequestContext) -> service.RootInfo:
    """Heartbeat with the service name and version."""
    return service.root_info()


@router.get("/health", auth="none", summary="Health Check", response=service.Health)
def health(ctx: RequestContext) -> service.Health:
    """Readiness probe; `firestore` tells whether Firestore answered."""
    return service.health()


@router.get("/debug", auth="admin", summary="Debug Info", response=service.DebugInfo)
def debug(ctx: RequestContext) -> service.DebugInfo:
    """Deployment facts for admins: version, configured providers, emulator hosts."""
    return service.debug_info()


@router.post(
    "/log/client",
    auth="optional",
    summary="Log Client Event",
    body=service.ClientLogEntry,
    response=service.ClientLogAccepted,
    status_code=202,
    max_body_bytes=service.CLIENT_LOG_MAX_BYTES,
    responses={413: "Payload Too Large"},
)
def log_client(ctx: RequestContext, body: service.ClientLogEntry) -> service.ClientLogAccepted:
    """Record an event from the web app, enriched with client host and user agent."""
    return service.log_client_event(
        body, client_host=ctx.client_host, user_agent=ctx.user_agent, principal=ctx.principal
    )


@router.get("/openapi.json", auth="none", summary="OpenAPI Document")
def openapi(ctx: RequestContext) -> flask.Response:
    """The OpenAPI 3.1 document of every route of every function."""
    return flask.Response(service.openapi_document(), mimetype="application/json")


@router.get("/docs", auth="none", summary="API Docs")
def docs(ctx: RequestContext) -> flask.Response:
    """Swagger UI over `/openapi.json`, served from local assets."""
    return flask.Response(service.docs_page(), mimetype="text/html")


@router.get("/docs/{asset}", auth="none", summary="API Docs Asset", responses={404: "Not Found"})
def docs_asset(ctx: RequestContext, asset: str) -> flask.Response:
    """A Swagger UI static file."""
    content, mimetype = service.swagger_asset(asset)
    response = flask.Response(content, mimetype=mimetype)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


meta = http_function(router)
