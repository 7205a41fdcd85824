"""Demo apps: small web pages that call deployed agents (`/demos/**`).

Owns the `demos` collection. A document `demos/{demoId}` holds `ownerId`,
`name`, `description`, `selectedApis`, `modelConfig`, `userPrompt`,
`generatedCode {html, css, js, thoughts}`, `composerThoughts`, `rev`,
`createdAt` and `updatedAt`; the API shows it as gofannon 81e4595's
`DemoApp` (`_id`, `_rev`, `created_at`, `updated_at`). Only the owner (or
an admin) sees a demo; anyone else gets 404.

`generate_code` asks a model, through the LLM gateway, for `{html, css, js}`
and charges the caller like a chat: the estimated cost is reserved before
the call and settled to the real cost after (`shared.agents.accounts`).

`page` assembles a saved demo into one HTML document under a strict
Content-Security-Policy (see `page_policy`). The page never holds a user
credential: it carries a capability made for it (`capability`), good only
for `POST /rest/{name}` of the deployments the demo selected, as its viewer,
without admin rights, for `DEMO_CAPABILITY_SECONDS` (see
`shared.platform.auth.DemoGrant`).
"""

from __future__ import annotations

import html as html_escape
import json
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, Field

from shared.agents import codegen, revisions
from shared.llm import gateway
from shared.platform import clients, erasure
from shared.platform.auth import Principal, issue_demo_capability, owned_record
from shared.platform.errors import (
    Forbidden,
)
from shared.platform.models import Model
from shared.platform.paging import Order, Page, PageQuery, fit, read_page
from shared.platform.transactions import Plan, write_if_unchanged
from shared.platform.values import StorableMap

DEMOS = "demos"
MAX_CODE_CHARS = 200_000
_CODE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "html": {"type": "string"},
        "css": {"type": "string"},
        "js": {"type": "string"},
    },
    "required": ["html", "css", "js"],
    "additionalProperties": False,
}


class _Body(Model):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())


class DeployedApi(_Body):
    """A deployed agent the demo may call, as `GET /deployments` lists it."""

    friendly_name: str = Field(alias="friendlyName", min_length=1, max_length=128)
    agent_id: str = Field(alias="agentId", min_length=1, max_length=128)
    description: str = Field(default="", max_length=10_000)
    input_schema: StorableMap = Field(alias="inputSchema", default_factory=dict)
    output_schema: StorableMap = Field(alias="outputSchema", default_factory=dict)


class ModelConfig(_Body):
    """The model that writes the demo's code."""

    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    parameters: StorableMap = Field(default_factory=dict)
    built_in_tool: str | None = Field(default=None, alias="builtInTool", max_length=64)


class GeneratedCode(_Body):
    """A demo's code: body HTML, a stylesheet, an ES module, and the model's thoughts."""

    html: str = Field(default="", max_length=MAX_CODE_CHARS)
    css: str = Field(default="", max_length=MAX_CODE_CHARS)
    js: str = Field(default="", max_length=MAX_CODE_CHARS)
    thoughts: str | None = Field(default=None, max_length=MAX_CODE_CHARS)


class GenerateDemoCodeRequest(_Body):
    """The body of `POST /demos/generate-code`."""

    user_prompt: str = Field(alias="userPrompt", min_length=1, max_length=20_000)
    selected_apis: list[DeployedApi] = Field(alias="selectedApis", max_length=20)
    model_config_: ModelConfig = Field(alias="modelConfig")
    built_in_tools: list[str] = Field(alias="builtInTools", default_factory=list, max_length=10)


class CreateDemoAppRequest(_Body):
    """The body of `POST /demos`."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5_000)
    selected_apis: list[DeployedApi] = Field(alias="selectedApis", max_length=20)
    model_config_: ModelConfig = Field(alias="modelConfig")
    user_prompt: str = Field(alias="userPrompt", max_length=20_000)
    generated_code: GeneratedCode = Field(alias="generatedCode")
    composer_thoughts: str | None = Field(
        default=None, alias="composerThoughts", max_length=MAX_CODE_CHARS
    )


class UpdateDemoAppRequest(CreateDemoAppRequest):
    """The body of `PUT /demos/{id}`: a whole demo, and optionally the `_rev` it replaces."""

    rev: str | None = Field(default=None, alias="_rev", max_length=64)


class DemoCapability(Model):
    """What a demo page may hold: `POST /rest/{deployments}` as its viewer, until it expires."""

    capability: str
    deployments: list[str]
    expires_at: datetime = Field(alias="expiresAt")


class DemoApp(Model):
    """A saved demo, as gofannon 81e4595 shapes it."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    id: str = Field(alias="_id")
    rev: str = Field(alias="_rev")
    name: str
    description: str | None = None
    selected_apis: list[DeployedApi] = Field(alias="selectedApis")
    model_config_: ModelConfig = Field(alias="modelConfig")
    user_prompt: str = Field(alias="userPrompt")
    generated_code: GeneratedCode = Field(alias="generatedCode")
    composer_thoughts: str | None = Field(default=None, alias="composerThoughts")
    created_at: datetime
    updated_at: datetime


def _require_user(principal: Principal) -> str:
    if not principal.user_id:
        raise Forbidden("Create your user first")
    return principal.user_id


def _stored(body: CreateDemoAppRequest) -> dict[str, Any]:
    return body.model_dump(by_alias=True, mode="json", exclude={"rev"})


def _to_demo(demo_id: str, record: dict[str, Any]) -> DemoApp:
    return DemoApp.model_validate(
        {
            **{key: value for key, value in record.items() if key in _DEMO_FIELDS},
            "_id": demo_id,
            "_rev": record["rev"],
            "created_at": record["createdAt"],
            "updated_at": record["updatedAt"],
        }
    )


_DEMO_FIELDS = frozenset(
    field.alias or name for name, field in CreateDemoAppRequest.model_fields.items()
)


def create(principal: Principal, body: CreateDemoAppRequest) -> DemoApp:
    """Save a new demo owned by the caller.

    Raises:
        Forbidden: The caller has no user id.
    """
    owner = _require_user(principal)
    demo_id = str(uuid.uuid4())
    record = revisions.new_owned(owner, _stored(body))
    clients.firestore().collection(DEMOS).document(demo_id).create(record)
    return _to_demo(demo_id, record)


def list_demos(principal: Principal, query: PageQuery) -> Page[list[DemoApp]]:
    """A page of the caller's demos, newest first.

    Raises:
        InvalidInput: A cursor that is not one of this list's.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    owner = _require_user(principal)
    owned = clients.firestore().collection(DEMOS).where(filter=FieldFilter("ownerId", "==", owner))
    order = [Order("createdAt", descending=True)]
    found, cursor = read_page(owned, order, query)
    demos = [_to_demo(snapshot.id, snapshot.to_dict() or {}) for snapshot in found]
    sizes = [len(demo.model_dump_json(by_alias=True)) for demo in demos]
    kept, cursor = fit(found, cursor, order, sizes)
    return Page(demos[:kept], cursor)


def _owned(principal: Principal, demo_id: str) -> dict[str, Any]:
    record = clients.firestore().collection(DEMOS).document(demo_id).get().to_dict()
    return owned_record(principal, record, "Demo app")


def get(principal: Principal, demo_id: str) -> DemoApp:
    """One demo (owner or admin).

    Raises:
        NotFound: No such demo, or someone else's.
    """
    return _to_demo(demo_id, _owned(principal, demo_id))


def update(principal: Principal, demo_id: str, body: UpdateDemoAppRequest) -> DemoApp:
    """Replace a demo's content, keeping its owner and creation time.

    Raises:
        NotFound: No such demo, or someone else's.
        Conflict: `_rev` was given and the demo has changed since.
    """
    ref = clients.firestore().collection(DEMOS).document(demo_id)

    def decide(record: dict[str, Any] | None) -> Plan[DemoApp]:
        record = owned_record(principal, record, "Demo app")
        changes = revisions.revise(record, body.rev, _stored(body), "demo app")
        return Plan(_to_demo(demo_id, {**record, **changes}), update=changes)

    return write_if_unchanged(ref, decide)


def delete(principal: Principal, demo_id: str) -> None:
    """Delete a demo (owner or admin).

    Raises:
        NotFound: No such demo, or someone else's.
    """
    _owned(principal, demo_id)
    clients.firestore().collection(DEMOS).document(demo_id).delete()


def capability(principal: Principal, demo_id: str) -> DemoCapability:
    """Mint the capability a demo's page holds, for its viewer (the owner or an admin).

    It names the deployments the demo selects now that its owner may call
    (the owner's own and public ones); the viewer's other rights (their data,
    their other deployments, admin) are not in it.

    Raises:
        NotFound: No such demo, or someone else's.
        Forbidden: The viewer is not signed in as a user.
    """
    return _capability(principal, demo_id, _owned(principal, demo_id))


def _capability(principal: Principal, demo_id: str, record: dict[str, Any]) -> DemoCapability:
    from shared.agents import agents

    selected = [api.friendly_name for api in _to_demo(demo_id, record).selected_apis]
    names = agents.callable_without_admin(str(record.get("ownerId") or ""), selected)
    token, grant = issue_demo_capability(principal, demo_id, names)
    return DemoCapability.model_validate(
        {
            "capability": token,
            "deployments": list(grant.deployments),
            "expiresAt": datetime.fromtimestamp(grant.expires, UTC),
        }
    )


def generate_code(principal: Principal, request: GenerateDemoCodeRequest) -> GeneratedCode:
    """Have the chosen model write the demo, charged to the caller like a chat.

    Raises:
        InvalidInput: The model configuration does not fit the catalog.
        PaymentRequired: The caller's remaining allowance cannot cover the call.
        Unavailable: The provider failed (nothing is charged).
        BadGateway: The model's answer was unusable twice (both calls charged); the
            detail says what was wrong.
    """
    owner = _require_user(principal)
    config = request.model_config_
    llm_request = gateway.LlmRequest(
        provider=config.provider,
        model=config.model,
        messages=[
            gateway.Message(role="system", content=_SYSTEM_PROMPT),
            gateway.Message(role="user", content=build_prompt(request)),
        ],
        parameters=config.parameters,
        builtInTools=request.built_in_tools,
        responseSchema=_CODE_SCHEMA,
    )
    return codegen.generate(
        principal,
        owner,
        llm_request,
        source="demo-generate-code",
        check=_checked,
        what="the demo's code as JSON",
    )


def _checked(answer: dict[str, Any], result: gateway.LlmResult) -> GeneratedCode:
    """The demo's code from the model's answer, once its three parts are there.

    Raises:
        codegen.Unusable: A part missing or not a string, an empty `html`, or a part too long.
    """
    parts = {name: codegen.string_field(answer, name) for name in ("html", "css", "js")}
    if not parts["html"].strip():
        raise codegen.Unusable("the field `html` was empty")
    for name, text in parts.items():
        if len(text) > MAX_CODE_CHARS:
            raise codegen.Unusable(
                f"the field `{name}` was longer than {MAX_CODE_CHARS} characters"
            )
    return GeneratedCode.model_validate({**parts, "thoughts": result.thoughts})


_SYSTEM_PROMPT = (
    "You write small single-page web apps in plain HTML, CSS and JavaScript. "
    "You answer with one JSON object with the string fields html, css and js, nothing else."
)


def build_prompt(request: GenerateDemoCodeRequest) -> str:
    """The instructions for the model: the page's rules, each selected API, the user's request."""
    apis = "\n\n".join(_api_doc(api) for api in request.selected_apis) or "(none selected)"
    return f"""Build a single-page web app.

Rules of the page it will run in:
- `html` is the content of <body> (no <html>, <head> or <body> tags); `css` is a
  stylesheet (no <style> tag); `js` is an ES module (no <script> tag).
- No frameworks or outside resources: no CDNs, web fonts or images from other
  sites; the page's Content-Security-Policy blocks them. Inline event handler
  attributes (onclick="...") and eval do not run: attach handlers in `js` with
  addEventListener.
- The APIs below are the only network calls the page may make. Call one with
  `await fetch(`${{API_BASE_URL}}/rest/<name>`, {{method: "POST", headers:
  {{"Content-Type": "application/json"}}, body: JSON.stringify(input)}})`:
  `API_BASE_URL` is predefined, and the page authorizes these calls itself.
  The body is the API's input object; the answer is JSON. On an error status
  the answer is `{{"detail": "..."}}`: show that message to the user.
- Make it clean and usable: show progress while a call runs and its result
  when it returns.

Available APIs:

{apis}

What the app should do:
{request.user_prompt}
"""


def _api_doc(api: DeployedApi) -> str:
    return (
        f"### {api.friendly_name}\n"
        f"POST {{API_BASE_URL}}/rest/{api.friendly_name}\n"
        f"{api.description}\n"
        f"Input (request body JSON Schema): {json.dumps(api.input_schema)}\n"
        f"Output (response JSON Schema): {json.dumps(api.output_schema)}"
    )


def page_policy(api_origin: str, nonce: str) -> str:
    """The page's Content-Security-Policy (the parts a `<meta>` tag can carry too).

    Scripts run only with this response's nonce (so script tags or handler
    attributes inside the generated HTML do not run), network calls reach
    only the API's origin, images and fonts only `data:`/`blob:` URLs, and
    forms, `<base>`, plugins and frames are off.
    """
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            "style-src 'unsafe-inline'",
            "img-src data: blob:",
            "font-src data:",
            f"connect-src {api_origin}",
            "form-action 'none'",
            "base-uri 'none'",
        ]
    )


def page(principal: Principal, demo_id: str, api_origin: str) -> tuple[str, str]:
    """Assemble a saved demo into one HTML document.

    Args:
        principal: The viewer (the owner or an admin).
        demo_id: The demo.
        api_origin: The origin the page's API calls go to (`API_BASE_URL`).

    Returns:
        The document and its Content-Security-Policy header value.

    Raises:
        NotFound: No such demo, or someone else's.
        Forbidden: The viewer is not signed in as a user.
    """
    record = _owned(principal, demo_id)
    demo = _to_demo(demo_id, record)
    granted = _capability(principal, demo_id, record)
    nonce = secrets.token_urlsafe(18)
    policy = page_policy(api_origin, nonce)
    code = demo.generated_code
    document = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html_escape.escape(policy)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{html_escape.escape(demo.name)}</title>
<style>{_inert(code.css, "style")}</style>
</head>
<body>
{code.html}
<script nonce="{nonce}">{_bootstrap(api_origin, granted.capability)}</script>
<script type="module" nonce="{nonce}">{_inert(code.js, "script")}</script>
</body>
</html>
"""
    header = f"{policy}; frame-ancestors 'self'; sandbox allow-scripts allow-forms allow-modals"
    return document, header


def _inert(text: str, tag: str) -> str:
    r"""Keep code from closing its own element early (`</script` becomes `<\/script`)."""
    return re.sub(f"</({tag})", r"<\\/\1", text, flags=re.IGNORECASE)


def _bootstrap(api_origin: str, capability: str) -> str:
    """Defines `API_BASE_URL` and authorizes the page's `/rest/` calls with its capability.

    The capability is the page's own (`capability`); nothing stronger is ever
    in the page's realm. An embedding window that keeps the page open longer
    than the capability lives can mint a fresh one (`POST
    /demos/{id}/capability`) and hand it over with
    `postMessage({type: "series:capability", capability}, "*")`; only messages
    from the parent window carrying a `demo:` capability are taken.
    """
    return (
        f"const API_BASE_URL = {json.dumps(api_origin)};\n"
        f"(() => {{\n  let capability = {json.dumps(capability)};\n"
        """  window.addEventListener("message", (event) => {
    const data = event.data;
    if (event.source === window.parent && data && data.type === "series:capability"
        && typeof data.capability === "string" && data.capability.startsWith("demo:")) {
      capability = data.capability;
    }
  });
  const send = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    const url = input instanceof Request ? input.url : String(input);
    if (!url.startsWith(API_BASE_URL + "/rest/")) {
      return send(input, init);
    }
    const headers = new Headers(init.headers || (input instanceof Request ? input.headers : {}));
    headers.set("Authorization", "Bearer " + capability);
    return send(input, { ...init, headers });
  };
})();"""
    )


def _demos_of(user_id: str) -> Any:
    return erasure.belonging_to(DEMOS, user_id, field="ownerId")


def delete_user_data(user_id: str) -> None:
    """Delete a user's demo apps (re-runnable)."""
    erasure.delete_matching(_demos_of(user_id))


def export_user_data(user_id: str, limit: int) -> list[dict[str, Any]]:
    """Return a user's demo apps (at most `limit`)."""
    return [{"id": s.id, **(s.to_dict() or {})} for s in _demos_of(user_id).limit(limit).stream()]
