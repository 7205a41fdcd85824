"""The `agents` function: running agent code (through the private sandbox) and its callbacks."""

from __future__ import annotations

import flask

from shared.agents import data_store, runs
from shared.llm import gateway
from shared.platform.http import RequestContext, Router, http_function

router = Router("agents")


@router.post(
    "/agents/run-code",
    auth="user",
    summary="Run Agent Code",
    body=runs.RunCodeBody,
    response=runs.RunCodeResult,
    responses={503: "Service Unavailable"},
)
def run_code(ctx: RequestContext, body: runs.RunCodeBody) -> runs.RunCodeResult:
    """Run code in the sandbox; the agent's own failures come back in `error`."""
    return runs.run_code(ctx.user, body)


@router.post(
    "/agents/run-code/stream",
    auth="user",
    summary="Run Agent Code (Server-Sent Events)",
    body=runs.RunCodeBody,
)
def run_code_stream(ctx: RequestContext, body: runs.RunCodeBody) -> flask.Response:
    """`event: trace` frames as the agent runs, then one `event: done` frame."""
    frames = runs.stream_run_code(ctx.user, body)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return flask.Response(frames, mimetype="text/event-stream", headers=headers)


@router.post(
    "/agents/run-code/llm",
    auth="run",
    summary="Model Call From Agent Code",
    body=gateway.LlmRequest,
    response=runs.RunLlmResult,
    responses={402: "Payment Required", 403: "Forbidden", 503: "Service Unavailable"},
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
    responses={403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"},
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
    response=data_store.NamespaceList,
)
def list_namespaces(ctx: RequestContext) -> data_store.NamespaceList:
    """The caller's namespaces with record counts and sizes."""
    return data_store.list_namespaces(ctx.user)


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
    response=list[data_store.DataStoreRecord],
)
def list_records(ctx: RequestContext, namespace: str) -> list[data_store.DataStoreRecord]:
    """Every record of the namespace, values included."""
    return data_store.list_records(ctx.user, namespace)


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
    responses=_SIZES,
)
def data_store_op(ctx: RequestContext, body: data_store.OpBody) -> data_store.OpResult:
    """`data_store` in agent code: one operation on the run's user's records."""
    return data_store.run_op(ctx.user, body)


agents = http_function(router)
