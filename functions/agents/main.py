"""The `agents` function: running agent code (through the private sandbox) and its callbacks."""

from __future__ import annotations

import flask

from shared.agents import runs
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


agents = http_function(router)
