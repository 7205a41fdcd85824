"""The `agents` function: saved agents, deployments, running agent code (sandbox) and callbacks."""

from __future__ import annotations

from typing import Any

import flask
from pydantic import ConfigDict

from shared.agents import agents as saved
from shared.agents import cancels, composer, data_store, runs
from shared.llm import gateway
from shared.platform.http import RequestContext, Router, http_function
from shared.platform.models import Model
from shared.platform.paging import Page, PageQuery

router = Router("agents")
_OWNED = {404: "Not Found"}
_MAX_AGENT_BYTES = 900_000


@router.post(
    "/agents",
    auth="user",
    summary="Create Agent",
    body=saved.CreateAgentRequest,
    response=saved.Agent,
    status_code=201,
    max_body_bytes=_MAX_AGENT_BYTES,
)
def create_agent(ctx: RequestContext, body: saved.CreateAgentRequest) -> saved.Agent:
    """Save a new agent owned by the caller."""
    return saved.create(ctx.user, body)


@router.get(
    "/agents",
    auth="user",
    summary="List Agents",
    query=saved.ListQuery,
    response=list[saved.Agent],
    responses={403: "Forbidden"},
)
def list_agents(ctx: RequestContext, query: saved.ListQuery) -> Page[list[saved.Agent]]:
    """A page of the caller's agents, newest first (`?all=true`: everyone's, admins only).

    More pages: repeat with `cursor` = the `X-Next-Cursor` header (absent on the last page).
    """
    return saved.list_agents(ctx.user, query)


@router.get(
    "/agents/{agent_id:id}",
    auth="user",
    summary="Get Agent",
    response=saved.Agent,
    responses=_OWNED,
)
def get_agent(ctx: RequestContext, agent_id: str) -> saved.Agent:
    """One of the caller's agents."""
    return saved.get(ctx.user, agent_id)


@router.put(
    "/agents/{agent_id:id}",
    auth="user",
    summary="Update Agent",
    body=saved.UpdateAgentRequest,
    response=saved.Agent,
    max_body_bytes=_MAX_AGENT_BYTES,
    responses={**_OWNED, 409: "Conflict"},
)
def update_agent(ctx: RequestContext, agent_id: str, body: saved.UpdateAgentRequest) -> saved.Agent:
    """Merge the sent fields into the agent (a stale `_rev`, when sent, is 409)."""
    return saved.update(ctx.user, agent_id, body)


@router.delete(
    "/agents/{agent_id:id}",
    auth="user",
    summary="Delete Agent",
    status_code=204,
    responses=_OWNED,
)
def delete_agent(ctx: RequestContext, agent_id: str) -> None:
    """Delete the agent and its deployments."""
    saved.delete(ctx.user, agent_id)


@router.get(
    "/agents/{agent_id:id}/chain",
    auth="user",
    summary="Get Agent Chain",
    response=saved.Chain,
    responses=_OWNED,
)
def get_chain(ctx: RequestContext, agent_id: str) -> saved.Chain:
    """The agents and MCP servers the agent reaches, as nodes and edges."""
    return saved.chain(ctx.user, agent_id)


@router.post(
    "/agents/generate-code",
    auth="user",
    summary="Generate Agent Code",
    body=composer.GenerateCodeRequest,
    response=composer.GeneratedAgentCode,
    responses={
        400: "Bad Request",
        402: "Payment Required",
        429: "Too Many Requests",
        502: "Bad Gateway",
        503: "Service Unavailable",
    },
)
def generate_code(
    ctx: RequestContext, body: composer.GenerateCodeRequest
) -> composer.GeneratedAgentCode:
    """Have the composer model write the agent's code (one call, charged to the caller)."""
    return composer.generate_code(ctx.user, body)


@router.post(
    "/agents/{agent_id:id}/deploy",
    auth="user",
    summary="Deploy Agent",
    query=saved.DeployQuery,
    response=saved.Deployed,
    status_code=201,
    responses={400: "Bad Request", **_OWNED, 409: "Conflict"},
)
def deploy_agent(ctx: RequestContext, agent_id: str, query: saved.DeployQuery) -> saved.Deployed:
    """Publish the agent at `/rest/{friendlyName}` (`?public=true`: for every signed-in user)."""
    return saved.deploy(ctx.user, agent_id, query)


@router.delete(
    "/agents/{agent_id:id}/undeploy",
    auth="user",
    summary="Undeploy Agent",
    status_code=204,
    responses=_OWNED,
)
def undeploy_agent(ctx: RequestContext, agent_id: str) -> None:
    """Remove the agent's deployment (none is not an error)."""
    saved.undeploy(ctx.user, agent_id)


@router.get(
    "/agents/{agent_id:id}/deployment",
    auth="user",
    summary="Get Agent Deployment",
    response=saved.DeploymentStatus,
    responses=_OWNED,
)
def get_deployment(ctx: RequestContext, agent_id: str) -> saved.DeploymentStatus:
    """Whether the agent is deployed, and under which name."""
    return saved.deployment(ctx.user, agent_id)


@router.get(
    "/deployments",
    auth="user",
    summary="List Deployments",
    query=saved.DeploymentsQuery,
    response=list[saved.DeployedApi],
    responses={403: "Forbidden"},
)
def list_deployments(
    ctx: RequestContext, query: saved.DeploymentsQuery
) -> Page[list[saved.DeployedApi]]:
    """The caller's chosen deployments, then a page of their own by name (`?all=true`: admins).

    More pages: repeat with `cursor` = the `X-Next-Cursor` header (absent on the last page).
    """
    return saved.list_deployments(ctx.user, query)


@router.get(
    "/deployments/public",
    auth="user",
    summary="List Public Deployments",
    query=PageQuery,
    response=list[saved.DeployedApi],
    responses={403: "Forbidden"},
)
def list_public_deployments(ctx: RequestContext, query: PageQuery) -> Page[list[saved.DeployedApi]]:
    """A page of every user's public deployments, by name (choose one to use it in chats).

    More pages: repeat with `cursor` = the `X-Next-Cursor` header (absent on the last page).
    """
    return saved.list_public(ctx.user, query)


@router.put(
    "/deployments/{friendly_name}/chosen",
    auth="user",
    summary="Choose Deployment",
    response=saved.ChosenDeployments,
    responses={403: "Forbidden", 404: "Not Found", 409: "Conflict"},
)
def choose_deployment(ctx: RequestContext, friendly_name: str) -> saved.ChosenDeployments:
    """Use a deployment the caller may call: listed in `/deployments` and as a `gofannon` model."""
    return saved.choose(ctx.user, friendly_name)


@router.delete(
    "/deployments/{friendly_name}/chosen",
    auth="user",
    summary="Unchoose Deployment",
    status_code=204,
    responses={403: "Forbidden"},
)
def unchoose_deployment(ctx: RequestContext, friendly_name: str) -> None:
    """Stop using a chosen deployment (not chosen is not an error)."""
    saved.unchoose(ctx.user, friendly_name)


class AgentInput(Model):
    """Any JSON object: the deployed agent's `input_dict`."""

    model_config = ConfigDict(extra="allow")


@router.post(
    "/rest/{friendly_name}",
    auth="demo",
    summary="Run Deployed Agent",
    body=AgentInput,
    cors=True,
    responses={
        404: "Not Found",
        429: "Too Many Requests",
        502: "Bad Gateway",
        503: "Service Unavailable",
    },
)
def run_deployed(ctx: RequestContext, friendly_name: str, body: AgentInput) -> Any:
    """Run a deployed agent with the body as its input; the answer is the agent's result."""
    return runs.run_deployed(ctx.user, friendly_name, body.model_extra or {})


@router.post(
    "/agents/run-code",
    auth="user",
    summary="Run Agent Code",
    body=runs.RunCodeBody,
    response=runs.RunCodeResult,
    responses={429: "Too Many Requests", 503: "Service Unavailable"},
)
def run_code(ctx: RequestContext, body: runs.RunCodeBody) -> runs.RunCodeResult:
    """Run code in the sandbox; the agent's own failures come back in `error`."""
    return runs.run_code(ctx.user, body)


@router.post(
    "/agents/run-code/stream",
    auth="user",
    summary="Run Agent Code (Server-Sent Events)",
    body=runs.RunCodeBody,
    responses={429: "Too Many Requests"},
)
def run_code_stream(ctx: RequestContext, body: runs.RunCodeBody) -> flask.Response:
    """`event: trace` frames as the agent runs, then one `event: done` frame.

    The first frame's `runId` (also the `X-Run-Id` header) cancels the run with
    `POST /agents/run-code/{runId}/cancel`; closing the stream cancels it too.
    """
    run_id, frames = runs.stream_run_code(ctx.user, body)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Run-Id": run_id}
    return flask.Response(frames, mimetype="text/event-stream", headers=headers)


@router.post(
    "/agents/run-code/{run_id:id}/cancel",
    auth="user",
    summary="Cancel a Streamed Run",
    response=cancels.CancelAccepted,
    status_code=202,
    responses={404: "Not Found"},
)
def cancel_run(ctx: RequestContext, run_id: str) -> cancels.CancelAccepted:
    """End a run started by `POST /agents/run-code/stream` (its owner or an admin).

    The streaming instance sees the request within seconds, closes the sandbox
    call and the sandbox kills the run's whole process tree; the stream ends
    with `done.error` "The run was cancelled". Model calls the run made are
    charged, nothing after. 404 once the run has ended.
    """
    return cancels.cancel(ctx.user, run_id)


@router.post(
    "/agents/run-code/llm",
    auth="run",
    summary="Model Call From Agent Code",
    body=gateway.LlmRequest,
    response=runs.RunLlmResult,
    responses={
        401: "Unauthorized",
        402: "Payment Required",
        403: "Forbidden",
        503: "Service Unavailable",
    },
)
def run_code_llm(ctx: RequestContext, body: gateway.LlmRequest) -> runs.RunLlmResult:
    """A catalog model call charged to the run's user (run tokens only)."""
    return runs.complete_for_run(ctx.user, body)


@router.post(
    "/agents/run-code/call",
    auth="run",
    summary="Agent Call From Agent Code",
    body=runs.AgentCallBody,
    response=runs.AgentCallResult,
    responses={
        403: "Forbidden",
        404: "Not Found",
        429: "Too Many Requests",
        503: "Service Unavailable",
    },
)
def run_code_call(ctx: RequestContext, body: runs.AgentCallBody) -> runs.AgentCallResult:
    """Run an imported agent for `gofannon_client.call` (depth-limited, no cycles)."""
    return runs.call_agent(ctx.user, body)


_RECORD = "/data-store/namespaces/{namespace}/records/{key:path}"
_SIZES = {413: "Record or namespace too large"}


@router.get(
    "/data-store/namespaces",
    auth="user",
    summary="List Data Store Namespaces",
    query=PageQuery,
    response=data_store.NamespaceList,
)
def list_namespaces(ctx: RequestContext, query: PageQuery) -> Page[data_store.NamespaceList]:
    """A page of the caller's namespaces with record counts and sizes, and their totals.

    More pages: repeat with `cursor` = the `X-Next-Cursor` header (absent on the last page).
    """
    return data_store.list_namespaces(ctx.user, query)


@router.get(
    "/data-store/namespaces/{namespace}",
    auth="user",
    summary="Get Data Store Namespace",
    response=data_store.NamespaceStats,
)
def get_namespace(ctx: RequestContext, namespace: str) -> data_store.NamespaceStats:
    """One namespace's totals (zeros when it is empty)."""
    return data_store.namespace_stats(ctx.user, namespace)


@router.get(
    "/data-store/namespaces/{namespace}/records",
    auth="user",
    summary="List Data Store Records",
    query=PageQuery,
    response=list[data_store.DataStoreRecord],
)
def list_records(
    ctx: RequestContext, namespace: str, query: PageQuery
) -> Page[list[data_store.DataStoreRecord]]:
    """A page of the namespace's records by key, values included.

    More pages: repeat with `cursor` = the `X-Next-Cursor` header (absent on the last page).
    """
    return data_store.list_records(ctx.user, namespace, query)


@router.get(
    _RECORD,
    auth="user",
    summary="Get Data Store Record",
    response=data_store.DataStoreRecord,
    responses={404: "Not Found"},
)
def get_record(ctx: RequestContext, namespace: str, key: str) -> data_store.DataStoreRecord:
    """One record (keys may contain slashes)."""
    return data_store.get_record(ctx.user, namespace, key)


@router.put(
    _RECORD,
    auth="user",
    summary="Set Data Store Record",
    body=data_store.SetRecordBody,
    response=data_store.DataStoreRecord,
    responses=_SIZES,
)
def set_record(
    ctx: RequestContext, namespace: str, key: str, body: data_store.SetRecordBody
) -> data_store.DataStoreRecord:
    """Create or replace a record from the UI."""
    return data_store.set_record(ctx.user, namespace, key, body)


@router.delete(
    _RECORD,
    auth="user",
    summary="Delete Data Store Record",
    status_code=204,
    responses={404: "Not Found"},
)
def delete_record(ctx: RequestContext, namespace: str, key: str) -> None:
    """Delete a record."""
    data_store.delete_record(ctx.user, namespace, key)


@router.delete(
    "/data-store/namespaces/{namespace}",
    auth="user",
    summary="Clear Data Store Namespace",
    response=data_store.ClearedNamespace,
)
def clear_namespace(ctx: RequestContext, namespace: str) -> data_store.ClearedNamespace:
    """Delete every record of the namespace."""
    return data_store.clear_namespace(ctx.user, namespace)


@router.post(
    "/data-store/ops",
    auth="run",
    summary="Data Store Operation From Agent Code",
    body=data_store.OpBody,
    response=data_store.OpResult,
    responses={
        **_SIZES,
        403: "Not a run token, or a namespace the run's agent did not declare for this use",
    },
)
def data_store_op(ctx: RequestContext, body: data_store.OpBody) -> data_store.OpResult:
    """`data_store` in agent code: one operation on the run's user's records."""
    return data_store.run_op(ctx.user, body)


agents = http_function(router)
