"""Running agent code for a user: the platform's side of the sandbox.

`POST /agents/run-code` and its streaming twin issue a run token for the
caller, call the private `sandbox` function with it, and shape what comes
back as gofannon's UI reads it. Agent code calls back with that token:

- `POST /agents/run-code/llm`: a model call through the LLM gateway,
  reserved and settled on the user's allowance like any chat, and within
  the run's budget;
- `POST /agents/run-code/call`: another of the user's agents, only one the
  running agent imported, never one already on the call chain (cycles),
  and no deeper than `AGENT_CALL_MAX_DEPTH`;
- `POST /data-store/ops`, `/mcp/...`: see their modules.

What a run may do (`RunGrant`, carried by its token):

- act for its caller, who pays; the token expires with the run (the
  sandbox's wall clock and a margin) and is refused once the caller's
  account is deleted or its runs revoked (`accounts.require_live_run`);
- use the data-store namespaces the running agent declares in
  `dataStoreConfig`, with their access. `POST /agents/run-code` runs the
  owner's own editor code: with `dataStoreConfig` in the body it is held
  to it, without (as gofannon's UI sends it) it may use every namespace of
  the owner's own store, as the owner can in the UI;
- spend at most `RUN_LLM_BUDGET` on models, or `PUBLIC_RUN_LLM_BUDGET` for
  a deployment of another user (`POST /rest/{name}` of a public agent, or
  an admin running someone's private one). Such a foreign run may not call
  other agents, so it never reaches the caller's own agents, and its
  declared namespaces live in an area of the caller's store of its own
  (`agent:{agentId}:{namespace}`, `RunGrant.store_prefix`): it never
  reaches the caller's own namespaces, whatever names it declares;
- an agent call inside a run is part of the run: same run id, budget,
  epoch and expiry, the called agent's own declared namespaces (it must be
  the caller's own agent, imported by the calling one), and no slot of
  the user's; the run's calls in flight are bounded by `AGENT_CALLS_PER_RUN`.

Each top-level run holds a lease (`run_leases`, `RUNS_PER_USER`) while it runs.

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
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.agents import accounts, agents, cancels, metering, run_leases
from shared.agents.sandbox.host import MAX_CODE_CHARS, RunContext, SandboxCall
from shared.llm import catalog, gateway
from shared.platform import service
from shared.platform.auth import Principal, RunGrant, issue_run_token
from shared.platform.config import get_settings
from shared.platform.errors import (
    BadGateway,
    DomainError,
    Forbidden,
    InvalidInput,
    Unavailable,
)
from shared.platform.models import Model

logger = logging.getLogger(__name__)

DEFAULT_AGENT_NAME = "sandbox_agent"
RUN_MARGIN_SECONDS = 30
"""How long a run token and lease outlive the sandbox's wall clock (the call's own slack)."""
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
    data_store_config: list[agents.DataStoreNamespace] | None = Field(
        default=None,
        max_length=50,
        description="Namespaces the code may use; absent: every namespace of the caller's own",
    )


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

    def __init__(self, grant: RunGrant, body: RunCodeBody) -> None:
        self.run_id = grant.run_id
        self.user_id = grant.user_id
        self.body = body
        self.grant = grant
        self.agent_name = grant.chain[-1]
        self.depth = grant.depth
        token = issue_run_token(grant)
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
        self.lease: run_leases.Lease | None = None

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


def _declared(config: list[agents.DataStoreNamespace] | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return agents.declared_namespaces({"dataStoreConfig": [c.model_dump() for c in config]})


NAMESPACES_CHARS = 2000
"""The most characters of namespace names (with their access) a run may be granted: the
grant travels in the run token, which the sandbox takes up to 8 KiB of."""


def _bounded(namespaces: dict[str, Any] | None) -> dict[str, Any] | None:
    """The namespaces of a grant, refused when they would not fit in a run token.

    Raises:
        InvalidInput: The agent declares more namespace names than a run can carry.
    """
    if namespaces is not None and len(json.dumps(namespaces)) > NAMESPACES_CHARS:
        raise InvalidInput(
            f"dataStoreConfig declares more than a run can carry ({NAMESPACES_CHARS} "
            "characters of namespace names)",
            loc=("body", "dataStoreConfig"),
        )
    return namespaces


@dataclass(frozen=True)
class _Held:
    """A lease taken for a run before its grant was made (`run_deployed`)."""

    run_id: str
    expires: float
    lease: run_leases.Lease


def _expiry() -> float:
    return time.time() + get_settings().sandbox_wall_seconds + RUN_MARGIN_SECONDS


def _new_grant(
    principal: Principal,
    chain: list[str],
    agent_ids: list[str],
    namespaces: dict[str, Any] | None,
    budget: float,
    *,
    store_prefix: str = "",
    held: _Held | None = None,
) -> RunGrant:
    """A top-level run's grant for its caller (their account is created on first use).

    Raises:
        Forbidden: The caller has no user yet.
        Unauthorized: The caller's account is being deleted.
    """
    if not principal.user_id or principal.run is not None:
        raise Forbidden("Create your user first")
    return RunGrant(
        user_id=principal.user_id,
        chain=tuple(chain),
        agents=tuple(agent_ids),
        expires=held.expires if held else _expiry(),
        run_id=held.run_id if held else uuid.uuid4().hex,
        namespaces=_bounded(namespaces),
        budget_micros=accounts.to_micros(budget),
        epoch=accounts.start_run(principal),
        store_prefix=store_prefix,
    )


def _top_level(principal: Principal, body: RunCodeBody) -> _Run:
    grant = _new_grant(
        principal,
        [body.friendly_name or DEFAULT_AGENT_NAME],
        body.gofannon_agents,
        _declared(body.data_store_config),
        get_settings().run_llm_budget,
    )
    run = _Run(grant, body)
    run.lease = run_leases.acquire(grant.user_id, grant.run_id, grant.expires)
    return run


def _release(run: _Run) -> None:
    lease, run.lease = run.lease, None
    if lease is not None:
        run_leases.release(lease)


_releases: ThreadPoolExecutor | None = None


def _soon(release: Callable[[], None]) -> None:
    """Give a lease back on a background thread (off the answer's path).

    A release that never happens (the process stops first) leaves a lease
    that ends with the run's token.
    """
    _leasing().submit(release)


def _leasing() -> ThreadPoolExecutor:
    global _releases  # noqa: PLW0603 - one pool per process, made on first use
    if _releases is None:
        _releases = ThreadPoolExecutor(max_workers=4, thread_name_prefix="run-lease")
    return _releases


def _give_back(leasing: Future[run_leases.Lease]) -> None:
    if not leasing.cancelled() and leasing.exception() is None:
        run_leases.release(leasing.result())


def _release_soon(run: _Run) -> None:
    _soon(lambda: _release(run))


def _events(run: _Run, *, background: bool) -> Iterator[dict[str, Any]]:
    """The run's events; its lease is given back at the end (`background`: off the path)."""
    try:
        yield from run.events()
    finally:
        if background:
            _release_soon(run)
        else:
            _release(run)


def run_code(principal: Principal, body: RunCodeBody) -> RunCodeResult:
    """Run agent code once and return its result, error, warnings, data-store log and trace.

    Raises:
        Forbidden: The caller has no user yet.
        RateLimited: The caller has `RUNS_PER_USER` runs going already.
        Unavailable: The sandbox could not be reached.
    """
    trace: list[dict[str, Any]] = []
    done: dict[str, Any] = {}
    for event in _events(_top_level(principal, body), background=True):
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


class Frames:
    """A run's server-sent events; closing it (the client went away) ends the run's lease."""

    def __init__(self, frames: Generator[str], release: Callable[[], None]) -> None:
        self._frames = frames
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            return next(self._frames)
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        """Stop the stream and give the lease back (once)."""
        release, self._release = self._release, None
        try:
            self._frames.close()
        finally:
            if release is not None:
                release()


def stream_run_code(principal: Principal, body: RunCodeBody) -> tuple[str, Frames]:
    """Run agent code, as server-sent events: `trace` frames, then one `done` frame.

    The first frame (`agent_start`) carries the `runId` that `POST
    /agents/run-code/{runId}/cancel` takes; a `: keepalive` comment follows
    each silent second, so a stream the client closed is noticed and its run
    killed within about a second.

    Returns:
        The run id and the frames.

    Raises:
        Forbidden: The caller has no user yet (before anything is streamed).
        RateLimited: The caller has `RUNS_PER_USER` runs going already (idem).
    """
    run = _top_level(principal, body)

    def frames() -> Generator[str]:
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

    return run.run_id, Frames(frames(), lambda: _release_soon(run))


def _grant(principal: Principal) -> RunGrant:
    if principal.run is None or not principal.user_id:
        raise Forbidden("Only agent code may call this")
    accounts.require_live_run(principal.run)
    return principal.run


def call_agent(principal: Principal, body: AgentCallBody) -> AgentCallResult:
    """Run another of the user's agents for agent code (`gofannon_client.call`).

    The call is part of the calling run (see the module docstring): it runs
    with the called agent's declared namespaces and the run's budget and expiry.

    Raises:
        Unauthorized: The run's user was deleted or revoked.
        Forbidden: Not a run token, a cycle, or past the depth limit.
        NotFound: The agent was not imported by the calling agent.
        RateLimited: The run has `AGENT_CALLS_PER_RUN` agent calls going already.
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
    nested_grant = replace(
        grant,
        chain=(*grant.chain, body.agent_name),
        agents=tuple(nested.gofannon_agents),
        namespaces=_bounded(agents.declared_namespaces(agent)),
    )
    call_id = f"{grant.run_id}.{uuid.uuid4().hex}"
    lease = run_leases.acquire(grant.user_id, call_id, grant.expires, within=grant.run_id)
    done: dict[str, Any] = {}
    try:
        for event in _Run(nested_grant, nested).events():
            done = event.get("done", done)
    finally:
        _soon(lambda: run_leases.release(lease))
    return AgentCallResult(result=done.get("result"), error=done.get("error"))


def run_deployed(principal: Principal, friendly_name: str, input_dict: dict[str, Any]) -> Any:
    """Run a deployed agent for its caller (`POST /rest/{friendly_name}`).

    Raises:
        Forbidden: The caller has no user yet.
        NotFound: No deployment of that name the caller may call.
        RateLimited: The caller has `RUNS_PER_USER` runs going already.
        BadGateway: The agent failed (its error's last line is the detail).
        Unavailable: The sandbox could not be reached.
    """
    if not principal.user_id:
        raise Forbidden("Create your user first")
    run_id, expires = uuid.uuid4().hex, _expiry()
    # The lease is taken while the deployment is read: one round trip less on the way.
    leasing = _leasing().submit(run_leases.acquire, principal.user_id, run_id, expires)
    try:
        agent = agents.deployed_agent(principal.user_id, lambda: principal.is_admin, friendly_name)
    except BaseException:
        leasing.add_done_callback(_give_back)
        raise
    held = _Held(run_id, expires, leasing.result())
    return run_deployment(principal, agent, input_dict, background=True, held=held)


def run_deployment(
    principal: Principal,
    agent: agents.DeployedAgent,
    input_dict: dict[str, Any],
    *,
    background: bool = False,
    held: _Held | None = None,
) -> Any:
    """Run a resolved deployment for its caller and return its result.

    The caller pays and lends their data store, limited to the namespaces
    the agent declares; someone else's deployment also gets the smaller
    `PUBLIC_RUN_LLM_BUDGET` and no agent calls. With `background`, the
    run's lease is given back off the answer's path; `held` is a lease
    already taken for it.

    Raises:
        RateLimited: The caller has `RUNS_PER_USER` runs going already.
        BadGateway: The agent failed (its error's last line is the detail).
        Unavailable: The sandbox could not be reached.
    """
    settings = get_settings()
    own = agent.owner_id == principal.user_id
    body = RunCodeBody(
        code=agent.code,
        input_dict=input_dict,
        tools=agent.tools,
        gofannon_agents=agent.gofannon_agents,
    )
    try:
        grant = _new_grant(
            principal,
            [agent.friendly_name],
            agent.gofannon_agents if own else [],
            dict(agent.namespaces),
            settings.run_llm_budget if own else settings.public_run_llm_budget,
            store_prefix="" if own else f"agent:{agent.agent_id}:",
            held=held,
        )
    except BaseException:
        if held is not None:
            _soon(lambda: run_leases.release(held.lease))
        raise
    run = _Run(grant, body)
    run.lease = (
        held.lease if held else run_leases.acquire(grant.user_id, grant.run_id, grant.expires)
    )
    done: dict[str, Any] = {}
    for event in _events(run, background=background):
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
        Unauthorized: The run's user was deleted or revoked.
        Forbidden: Not a run token.
        InvalidInput: The request does not fit the catalog.
        PaymentRequired: The allowance or the run's budget cannot cover the estimate.
        UpstreamError: The provider failed.
    """
    if principal.run is None or not principal.user_id:
        raise Forbidden("Only agent code may call this")
    user_id = principal.run.user_id
    result = metering.charged_completion(principal, user_id, request, "agent-run")
    return RunLlmResult(
        content=result.content,
        thoughts=result.thoughts,
        model=result.model,
        usage=result.usage,
        cost=result.cost,
    )
