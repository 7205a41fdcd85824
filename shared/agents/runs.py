"""Running agent code for a user: the platform's side of the sandbox.

`POST /agents/run-code` and its streaming twin issue a run token for the
caller (minutes long, the user's, listing the agents the code may call),
call the private `sandbox` function with it, and shape what comes back as
gofannon's UI reads it. Agent code calls back with that token:

- `POST /agents/run-code/llm`: a model call through the LLM gateway,
  reserved and settled on the user's allowance like any chat;
- `POST /agents/run-code/call`: another of the user's agents, only one the
  running agent imported, never one already on the call chain (cycles),
  and no deeper than `AGENT_CALL_MAX_DEPTH`.

User-code failures are results (`error` set), never HTTP errors, except
for deployments: `run_deployed` (`POST /rest/{name}`, chat provider
`gofannon`) runs a deployment resolved by `shared.agents.agents` the same
way, as its caller, and answers the agent's failure with 502.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.agents import agents, cancels, metering
from shared.agents.sandbox.host import MAX_CODE_CHARS, RunContext, SandboxCall
from shared.llm import catalog, gateway
from shared.platform import service
from shared.platform.auth import Principal, RunGrant, issue_run_token
from shared.platform.config import get_settings
from shared.platform.errors import BadGateway, DomainError, Forbidden, Unavailable
from shared.platform.models import Model

logger = logging.getLogger(__name__)

DEFAULT_AGENT_NAME = "sandbox_agent"
CANCELLED = "The run was cancelled"
_TRACE_LIMIT = 2000
_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RunCodeBody(Model):
    """`POST /agents/run-code`: the code, its input and what it may use."""

    model_config = _CAMEL

    code: str = Field(max_length=MAX_CODE_CHARS)
    input_dict: dict[str, Any]
    tools: dict[str, list[str]] = Field(default_factory=dict)
    gofannon_agents: list[str] = Field(default_factory=list, max_length=50)
    llm_settings: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    friendly_name: str | None = Field(default=None, max_length=200)


class RunCodeResult(Model):
    """The outcome of a run, as the gofannon UI reads it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    result: Any = None
    error: str | None = None
    schema_warnings: list[str] | None = None
    ops_log: list[dict[str, Any]] | None = None
    trace: list[dict[str, Any]] | None = None


class AgentCallBody(Model):
    """`gofannon_client.call(agent_name, input_dict)` from agent code."""

    model_config = _CAMEL

    agent_name: str = Field(min_length=1, max_length=200)
    input_dict: dict[str, Any]


class AgentCallResult(Model):
    """The called agent's result, or its error."""

    result: Any = None
    error: str | None = None


class RunLlmResult(Model):
    """A model's answer to agent code."""

    content: str
    thoughts: str | None = None
    model: str
    usage: gateway.Usage
    cost: float


def output_warnings(result: Any, schema: dict[str, Any] | None) -> list[str]:
    """Advisory differences between a result and the declared output keys and types.

    The schema maps keys to `string`, `integer`, `float`, `boolean`, `list`
    or `json` (anything), as gofannon's agent editor declares them.
    """
    if not schema:
        return []
    if not isinstance(result, dict):
        return [
            f"Output is not a dict (got {type(result).__name__}). Expected keys: {sorted(schema)}."
        ]
    warnings = []
    missing, extra = set(schema) - set(result), set(result) - set(schema)
    if missing:
        warnings.append(f"Missing required output keys: {sorted(missing)}")
    if extra:
        warnings.append(f"Unexpected output keys not in schema: {sorted(extra)}.")
    kinds: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "integer": (int,),
        "float": (int, float),
        "boolean": (bool,),
        "list": (list,),
    }
    for key in sorted(set(schema) & set(result)):
        declared, value = schema[key], result[key]
        allowed = kinds.get(declared) if isinstance(declared, str) else None
        if allowed is None:
            continue
        if isinstance(value, bool) and declared in ("integer", "float"):
            warnings.append(f"Output '{key}' is a boolean but schema declares {declared}.")
        elif not isinstance(value, allowed):
            warnings.append(
                f"Output '{key}' has type {type(value).__name__} but schema declares {declared}."
            )
    return warnings


def _llm_overrides(settings: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The UI's `llmSettings` (per model, or one legacy object) as catalog parameters."""
    if not settings:
        return {}
    names = {"maxTokens": "max_tokens", "temperature": "temperature"}

    def parameters(raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            return {}
        return {names[k]: v for k, v in raw.items() if k in names and v is not None}

    per_model = settings.get("perModel")
    if isinstance(per_model, dict):
        return {str(key): parameters(value) for key, value in per_model.items()}
    return {"*": parameters(settings)}


def _context_windows() -> dict[str, int]:
    return {
        f"{provider}/{model}": config.contextWindow
        for provider, entry in catalog.providers().items()
        for model, config in entry.models.items()
    }


class _Run:
    """One sandbox run: its call, and the events it streams back."""

    def __init__(self, user_id: str, body: RunCodeBody, chain: list[str]) -> None:
        self.run_id = uuid.uuid4().hex
        self.user_id = user_id
        self.body = body
        self.agent_name = chain[-1]
        self.depth = len(chain) - 1
        token = issue_run_token(user_id, chain, body.gofannon_agents)
        self.call = SandboxCall(
            code=body.code,
            inputDict=body.input_dict,
            tools=body.tools,
            context=RunContext(
                token=token,
                agentName=self.agent_name,
                contextWindows=_context_windows(),
                llmSettings=_llm_overrides(body.llm_settings),
            ),
        )
        self.started = time.monotonic()

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "ts": datetime.now(UTC).isoformat(),
            "agent_name": self.agent_name,
            "depth": self.depth,
            "source": "user" if kind in ("stdout", "stderr") else "system",
            **fields,
        }

    def events(self, *, cancellable: bool = False) -> Iterator[dict[str, Any]]:
        """Trace events (`{"trace": ...}`) then the outcome (`{"done": ...}`).

        `{"idle": True}` marks each silent second (the sandbox's heartbeat).
        Closing this generator closes the sandbox call, and the sandbox then
        kills the run's whole tree. A `cancellable` run is registered in
        `cancels` (its `runId` is in the first event) and ends when its owner
        cancels it; model calls it made are charged, nothing after.

        Raises:
            Unavailable: The sandbox could not be reached.
        """
        settings = get_settings()
        start = {"runId": self.run_id} if cancellable else {}
        if cancellable:
            cancels.register(self.run_id, self.user_id, settings.sandbox_wall_seconds + 120)
        done: dict[str, Any] = {"outcome": "error", "error": "The sandbox ended the run early"}
        try:
            yield {"trace": self._event("agent_start", agent_id=None, called_by=None, **start)}
            response = service.call(
                settings.sandbox_url, self.call, timeout=settings.sandbox_wall_seconds + 30
            )
            try:
                check_at = time.monotonic() + cancels.POLL_SECONDS
                for line in response.iter_lines():
                    if cancellable and time.monotonic() >= check_at:
                        check_at = time.monotonic() + cancels.POLL_SECONDS
                        if cancels.cancelled(self.run_id):
                            done = {"outcome": "error", "error": CANCELLED}
                            break
                    message = json.loads(line) if line else {}
                    if not message:
                        yield {"idle": True}
                    elif "trace" in message:
                        yield {"trace": self._shape(message["trace"])}
                    elif "done" in message:
                        done = message["done"]
            except (ValueError, OSError) as exc:
                raise Unavailable("The sandbox connection failed") from exc
            finally:
                response.close()
        finally:
            if cancellable:
                cancels.unregister(self.run_id)
        outcome = "error" if done.get("error") else "success"
        duration = round((time.monotonic() - self.started) * 1000, 1)
        if outcome == "error":
            yield {"trace": self._event("error", message=done.get("error"))}
        yield {"trace": self._event("agent_end", duration_ms=duration, outcome=outcome)}
        warnings = output_warnings(done.get("result"), self.body.output_schema)
        yield {
            "done": {
                "outcome": outcome,
                "result": done.get("result") if outcome == "success" else None,
                "error": done.get("error") or None,
                "schemaWarnings": (warnings or None) if outcome == "success" else None,
                "opsLog": done.get("opsLog") or None,
            }
        }

    def _shape(self, raw: dict[str, Any]) -> dict[str, Any]:
        kind = str(raw.get("type", "log"))
        fields = {k: v for k, v in raw.items() if k != "type"}
        if kind in ("stdout", "stderr"):
            fields = {"line": str(fields.get("text", "")).rstrip("\n")}
        return self._event(kind, **fields)


def _top_level(principal: Principal, body: RunCodeBody) -> _Run:
    if not principal.user_id:
        raise Forbidden("Create your user first")
    chain = [
        *(principal.run.chain if principal.run else ()),
        body.friendly_name or DEFAULT_AGENT_NAME,
    ]
    return _Run(principal.user_id, body, chain)


def run_code(principal: Principal, body: RunCodeBody) -> RunCodeResult:
    """Run agent code once and return its result, error, warnings, data-store log and trace.

    Raises:
        Forbidden: The caller has no user yet.
        Unavailable: The sandbox could not be reached.
    """
    trace: list[dict[str, Any]] = []
    done: dict[str, Any] = {}
    for event in _top_level(principal, body).events():
        if "trace" in event and len(trace) < _TRACE_LIMIT:
            trace.append(event["trace"])
        done = event.get("done", done)
    return RunCodeResult(
        result=done.get("result"),
        error=done.get("error"),
        schema_warnings=done.get("schemaWarnings"),
        ops_log=done.get("opsLog"),
        trace=trace or None,
    )


def stream_run_code(principal: Principal, body: RunCodeBody) -> tuple[str, Iterator[str]]:
    """Run agent code, as server-sent events: `trace` frames, then one `done` frame.

    The first frame (`agent_start`) carries the `runId` that `POST
    /agents/run-code/{runId}/cancel` takes; a `: keepalive` comment follows
    each silent second, so a stream the client closed is noticed and its run
    killed within about a second.

    Returns:
        The run id and the frames.

    Raises:
        Forbidden: The caller has no user yet (before anything is streamed).
    """
    run = _top_level(principal, body)

    def frames() -> Iterator[str]:
        try:
            for event in run.events(cancellable=True):
                if "idle" in event:
                    yield ": keepalive\n\n"
                    continue
                kind = "trace" if "trace" in event else "done"
                yield f"event: {kind}\ndata: {json.dumps(event[kind], default=str)}\n\n"
        except DomainError as exc:
            failure = {"outcome": "error", "result": None, "error": exc.detail}
            payload = {**failure, "schemaWarnings": None, "opsLog": None}
            yield f"event: done\ndata: {json.dumps(payload)}\n\n"

    return run.run_id, frames()


def _grant(principal: Principal) -> RunGrant:
    if principal.run is None or not principal.user_id:
        raise Forbidden("Only agent code may call this")
    return principal.run


def call_agent(principal: Principal, body: AgentCallBody) -> AgentCallResult:
    """Run another of the user's agents for agent code (`gofannon_client.call`).

    Raises:
        Forbidden: Not a run token, a cycle, or past the depth limit.
        NotFound: The agent was not imported by the calling agent.
    """
    grant = _grant(principal)
    if body.agent_name in grant.chain:
        raise Forbidden(f"Agent call cycle: {' -> '.join([*grant.chain, body.agent_name])}")
    if grant.depth + 1 > get_settings().agent_call_max_depth:
        raise Forbidden(f"Agent calls nest deeper than {get_settings().agent_call_max_depth}")
    agent = agents.callable_agent(grant.user_id, list(grant.agents), body.agent_name)
    nested = RunCodeBody(
        code=agent.get("code") or "",
        input_dict=body.input_dict,
        tools=agent.get("tools") or {},
        gofannon_agents=agent.get("gofannonAgents") or [],
    )
    done: dict[str, Any] = {}
    for event in _Run(grant.user_id, nested, [*grant.chain, body.agent_name]).events():
        done = event.get("done", done)
    return AgentCallResult(result=done.get("result"), error=done.get("error"))


def run_deployed(principal: Principal, friendly_name: str, input_dict: dict[str, Any]) -> Any:
    """Run a deployed agent for its caller (`POST /rest/{friendly_name}`).

    Raises:
        Forbidden: The caller has no user yet.
        NotFound: No deployment of that name the caller may call.
        BadGateway: The agent failed (its error's last line is the detail).
        Unavailable: The sandbox could not be reached.
    """
    if not principal.user_id:
        raise Forbidden("Create your user first")
    agent = agents.deployed_agent(principal.user_id, lambda: principal.is_admin, friendly_name)
    return run_deployment(principal.user_id, agent, input_dict)


def run_deployment(user_id: str, agent: agents.DeployedAgent, input_dict: dict[str, Any]) -> Any:
    """Run a resolved deployment as `user_id` and return its result.

    Raises:
        BadGateway: The agent failed (its error's last line is the detail).
        Unavailable: The sandbox could not be reached.
    """
    body = RunCodeBody(
        code=agent.code,
        input_dict=input_dict,
        tools=agent.tools,
        gofannon_agents=agent.gofannon_agents,
    )
    done: dict[str, Any] = {}
    for event in _Run(user_id, body, [agent.friendly_name]).events():
        done = event.get("done", done)
    if done.get("error"):
        lines = [line for line in str(done["error"]).splitlines() if line.strip()]
        raise BadGateway(f"The agent failed: {lines[-1].strip() if lines else 'no error text'}")
    return done.get("result")


def complete_for_run(principal: Principal, request: gateway.LlmRequest) -> RunLlmResult:
    """A model call from agent code, charged to the run's user like a chat.

    The estimate is reserved first, so parallel runs cannot overspend; the
    real cost is settled after the call with a ledger entry, and a failed
    call releases the reservation.

    Raises:
        Forbidden: Not a run token.
        InvalidInput: The request does not fit the catalog.
        PaymentRequired: The allowance cannot cover the estimate.
        UpstreamError: The provider failed.
    """
    user_id = _grant(principal).user_id
    result = metering.charged_completion(principal, user_id, request, "agent-run")
    return RunLlmResult(
        content=result.content,
        thoughts=result.thoughts,
        model=result.model,
        usage=result.usage,
        cost=result.cost,
    )
