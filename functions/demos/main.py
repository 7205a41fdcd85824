"""The `demos` function: demo apps (CRUD), their code generation, and their pages."""

from __future__ import annotations

import flask

from shared.agents import demos as demo_apps
from shared.platform.config import get_settings
from shared.platform.http import RequestContext, Router, http_function
from shared.platform.paging import Page, PageQuery

router = Router("demos")
_OWNED = {404: "Not Found"}
# A demo (its code included) must fit in one Firestore document.
_MAX_DEMO_BYTES = 900_000


@router.post(
    "/demos/generate-code",
    auth="user",
    summary="Generate Demo App Code",
    body=demo_apps.GenerateDemoCodeRequest,
    response=demo_apps.GeneratedCode,
    responses={402: "Payment Required", 502: "Bad Gateway", 503: "Service Unavailable"},
)
def generate_code(
    ctx: RequestContext, body: demo_apps.GenerateDemoCodeRequest
) -> demo_apps.GeneratedCode:
    """Have the chosen model write the app's HTML, CSS and JavaScript (charged to the caller)."""
    return demo_apps.generate_code(ctx.user, body)


@router.post(
    "/demos",
    auth="user",
    summary="Create Demo App",
    body=demo_apps.CreateDemoAppRequest,
    response=demo_apps.DemoApp,
    status_code=201,
    max_body_bytes=_MAX_DEMO_BYTES,
)
def create_demo(ctx: RequestContext, body: demo_apps.CreateDemoAppRequest) -> demo_apps.DemoApp:
    """Save a new demo app owned by the caller."""
    return demo_apps.create(ctx.user, body)


@router.get(
    "/demos",
    auth="user",
    summary="List Demo Apps",
    query=PageQuery,
    response=list[demo_apps.DemoApp],
)
def list_demos(ctx: RequestContext, query: PageQuery) -> Page[list[demo_apps.DemoApp]]:
    """A page of the caller's demo apps, newest first.

    More pages: repeat with `cursor` = the `X-Next-Cursor` header (absent on the last page).
    """
    return demo_apps.list_demos(ctx.user, query)


@router.get(
    "/demos/{demo_id:id}",
    auth="user",
    summary="Get Demo App",
    response=demo_apps.DemoApp,
    responses=_OWNED,
)
def get_demo(ctx: RequestContext, demo_id: str) -> demo_apps.DemoApp:
    """One of the caller's demo apps."""
    return demo_apps.get(ctx.user, demo_id)


@router.put(
    "/demos/{demo_id:id}",
    auth="user",
    summary="Update Demo App",
    body=demo_apps.UpdateDemoAppRequest,
    response=demo_apps.DemoApp,
    max_body_bytes=_MAX_DEMO_BYTES,
    responses={**_OWNED, 409: "Conflict"},
)
def update_demo(
    ctx: RequestContext, demo_id: str, body: demo_apps.UpdateDemoAppRequest
) -> demo_apps.DemoApp:
    """Replace a demo app's content (a stale `_rev`, when sent, is 409)."""
    return demo_apps.update(ctx.user, demo_id, body)


@router.delete(
    "/demos/{demo_id:id}",
    auth="user",
    summary="Delete Demo App",
    status_code=204,
    responses=_OWNED,
)
def delete_demo(ctx: RequestContext, demo_id: str) -> None:
    """Delete one of the caller's demo apps."""
    demo_apps.delete(ctx.user, demo_id)


@router.post(
    "/demos/{demo_id:id}/capability",
    auth="user",
    summary="Mint Demo App Capability",
    response=demo_apps.DemoCapability,
    responses={**_OWNED, 403: "Forbidden"},
)
def demo_capability(ctx: RequestContext, demo_id: str) -> demo_apps.DemoCapability:
    """A fresh capability for the demo's page: `POST /rest/{its deployments}` as the caller."""
    return demo_apps.capability(ctx.user, demo_id)


@router.get("/demos/{demo_id:id}/page", auth="user", summary="Demo App Page", responses=_OWNED)
def demo_page(ctx: RequestContext, demo_id: str) -> flask.Response:
    """The saved app as one HTML page (strict Content-Security-Policy) holding its capability."""
    origin = get_settings().public_api_url or ctx.request.host_url.rstrip("/")
    document, policy = demo_apps.page(ctx.user, demo_id, origin)
    response = flask.Response(document, status=200, mimetype="text/html")
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, no-store"
    return response


demos = http_function(router)
