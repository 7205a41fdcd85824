"""Saved agents and their deployments: the owner of `agents` and `deployments`.

`agents/{agentId}` holds the agent as gofannon 81e4595's web UI sends it,
with camelCase field names (`name`, `description`, `code`, `docstring`,
`friendlyName`, `tools`, `swaggerSpecs`, `inputSchema`, `outputSchema`,
`invokableModels`, `gofannonAgents`, `composerThoughts`,
`composerModelConfig`, `dataStoreConfig`) plus `ownerId`, `rev`,
`createdAt` and `updatedAt`. The API shows it with `_id` and `_rev`. Only
the owner (or an admin) sees an agent; anyone else gets 404. A `PUT`
merges the fields it sends; one that names a stale `_rev` is refused (409).

`deployments/{friendlyName}` holds `agentId`, `ownerId`, `public` and
`createdAt`: one name, one agent (the name is claimed with a create, so two
agents never hold it). Who may call a deployment (`POST /rest/{name}`, or
as provider `gofannon` in a chat): its owner and admins, and everyone
signed in when it is `public`. The caller runs it as themself: model calls
are charged to the caller and its data store is the caller's, but the run
may use only the namespaces the agent declares in `dataStoreConfig`; a
deployment of another user also runs within `PUBLIC_RUN_LLM_BUDGET`, may
not call other agents, and has an area of the caller's store to itself
(see `shared.agents.runs`).

`deployment_choices/{userId}` holds `names`: the other users' deployments a
user has chosen to use (at most `MAX_CHOSEN`, set with `PUT` and removed with
`DELETE /deployments/{name}/chosen`). Lists read only what the caller owns
or chose, a page at a time (`shared.platform.paging`, at most `PAGE_BYTES`
a page): `GET /deployments` is the caller's own deployments by name, its
first page preceded by the chosen ones; `GET /deployments/public` pages
through every public one; the `gofannon` chat provider offers the caller's
first `MAX_OWN_MODELS` own deployments and the chosen ones. A chosen
deployment that is gone, the caller's own, or no longer callable by them is
left out of the chosen ones.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from shared.agents import revisions
from shared.agents.sandbox.host import MAX_CODE_CHARS
from shared.platform import clients, erasure
from shared.platform.auth import Principal, can_access_owned, owned_record
from shared.platform.errors import BadRequest, Conflict, Forbidden, NotFound
from shared.platform.models import Model, NoNulls
from shared.platform.paging import Order, Page, PageQuery, fit, read_page
from shared.platform.transactions import Plan, write_if_unchanged
from shared.platform.values import DocId, StorableMap

if TYPE_CHECKING:
    from google.cloud.firestore import WriteBatch

AGENTS = "agents"
DEPLOYMENTS = "deployments"
CHOICES = "deployment_choices"
MAX_CHOSEN = 50
MAX_OWN_MODELS = 100
NOT_DEPLOYED = "No deployed agent found with that name."
CHAIN_MAX_DEPTH = 8
CHAIN_MAX_AGENTS = 200

_FRIENDLY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
FriendlyName = Annotated[str, StringConstraints(pattern=_FRIENDLY_NAME)]
ToolUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S{1,2000}$")]
ToolName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
_CAMEL = ConfigDict(
    alias_generator=to_camel, populate_by_name=True, extra="forbid", protected_namespaces=()
)


class SwaggerSpec(Model):
    """An OpenAPI/Swagger document the agent may call."""

    model_config = _CAMEL

    name: str = Field(min_length=1, max_length=200)
    content: str = Field(max_length=500_000)


class ModelChoice(Model):
    """A provider, model and parameters (the composer's, or one the agent may call)."""

    model_config = _CAMEL

    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    parameters: StorableMap = Field(default_factory=dict)
    built_in_tool: str | None = Field(default=None, max_length=64)


class DataStoreNamespace(Model):
    """A data-store namespace the agent declares it uses (advisory)."""

    model_config = _CAMEL

    namespace: str = Field(min_length=1, max_length=200)
    access: Literal["read", "write", "both"] = "both"
    description: str | None = Field(default=None, max_length=2_000)


class _AgentFields(Model):
    model_config = _CAMEL

    docstring: str | None = Field(default=None, max_length=20_000)
    friendly_name: FriendlyName | Literal[""] | None = None
    tools: dict[ToolUrl, list[ToolName]] | None = Field(default=None, max_length=20)
    swagger_specs: list[SwaggerSpec] | None = Field(default=None, max_length=20)
    input_schema: StorableMap | None = None
    output_schema: StorableMap | None = None
    invokable_models: list[ModelChoice] | None = Field(default=None, max_length=20)
    gofannon_agents: list[DocId] | None = Field(default=None, max_length=50)
    composer_thoughts: str | StorableMap | None = Field(default=None)
    composer_model_config: ModelChoice | None = None
    data_store_config: list[DataStoreNamespace] | None = Field(default=None, max_length=50)


class CreateAgentRequest(_AgentFields):
    """The body of `POST /agents`."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    code: str = Field(max_length=MAX_CODE_CHARS)


class UpdateAgentRequest(_AgentFields, NoNulls):
    """The body of `PUT /agents/{id}`: the fields to change, and optionally the `_rev` replaced.

    Null clears only what an Agent may hold as null; elsewhere it is refused.
    """

    nullable: ClassVar[frozenset[str]] = frozenset(
        {
            "docstring",
            "friendly_name",
            "input_schema",
            "output_schema",
            "invokable_models",
            "composer_thoughts",
            "composer_model_config",
            "rev",
        }
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    code: str | None = Field(default=None, max_length=MAX_CODE_CHARS)
    rev: str | None = Field(default=None, alias="_rev", max_length=64)


class Agent(Model):
    """A saved agent, as gofannon 81e4595 shapes it."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, protected_namespaces=()
    )

    id: str = Field(alias="_id")
    rev: str = Field(alias="_rev")
    name: str
    description: str = ""
    code: str = ""
    docstring: str | None = None
    friendly_name: str | None = None
    tools: dict[str, list[str]] = Field(default_factory=dict)
    swagger_specs: list[SwaggerSpec] = Field(default_factory=list)
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    invokable_models: list[ModelChoice] | None = None
    gofannon_agents: list[str] = Field(default_factory=list)
    composer_thoughts: Any = None
    composer_model_config: ModelChoice | None = None
    data_store_config: list[DataStoreNamespace] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class ListQuery(PageQuery):
    """`GET /agents?limit=&cursor=`, and `all=true`: every user's agents (admins only)."""

    all_users: bool = Field(default=False, alias="all")


class DeploymentsQuery(PageQuery):
    """`GET /deployments?limit=&cursor=`, and `all=true`: every deployment (admins only)."""

    all_users: bool = Field(default=False, alias="all")


class ChosenDeployments(Model):
    """The other users' deployments the caller has chosen to use, by name."""

    names: list[str]


class DeployQuery(Model):
    """`POST /agents/{id}/deploy?public=true`: callable by everyone signed in."""

    model_config = ConfigDict(extra="forbid")

    public: bool = False


class Deployed(Model):
    """The answer to a deployment."""

    message: str
    endpoint: str


class DeploymentStatus(Model):
    """Whether an agent is deployed, and under which name."""

    is_deployed: bool
    friendly_name: str | None = None
    public: bool | None = None


class DeployedApi(Model):
    """One deployment the caller may call, as gofannon's `DeployedApi`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    friendly_name: str
    agent_id: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class Chain(Model):
    """The agents (and MCP servers) an agent reaches, as gofannon's chain view reads them."""

    root: str
    nodes: dict[str, dict[str, Any]]
    edges: list[dict[str, Any]]


@dataclass(frozen=True)
class DeployedAgent:
    """A deployment resolved for a caller: what the runner needs."""

    friendly_name: str
    agent_id: str
    code: str
    tools: dict[str, list[str]]
    gofannon_agents: list[str]
    output_schema: dict[str, Any] | None
    owner_id: str
    namespaces: dict[str, Literal["read", "write", "both"]]


def declared_namespaces(record: dict[str, Any]) -> dict[str, Literal["read", "write", "both"]]:
    """The data-store namespaces a saved agent declares, with their access (`dataStoreConfig`).

    A run of the agent may use these and no others; an entry stored in an
    unexpected shape grants nothing.
    """
    declared: dict[str, Literal["read", "write", "both"]] = {}
    for entry in record.get("dataStoreConfig") or []:
        try:
            item = DataStoreNamespace.model_validate(entry)
        except ValueError:
            continue
        previous = declared.get(item.namespace)
        declared[item.namespace] = item.access if previous in (None, item.access) else "both"
    return declared


def _require_user(principal: Principal) -> str:
    if not principal.user_id:
        raise Forbidden("Create your user first")
    return principal.user_id


def _agents() -> Any:
    return clients.firestore().collection(AGENTS)


def _deployments() -> Any:
    return clients.firestore().collection(DEPLOYMENTS)


def _to_agent(agent_id: str, record: dict[str, Any]) -> Agent:
    fields = {key: value for key, value in record.items() if key in _STORED and value is not None}
    return Agent.model_validate(
        {
            **fields,
            "_id": agent_id,
            "_rev": record["rev"],
            "createdAt": record["createdAt"],
            "updatedAt": record["updatedAt"],
        }
    )


_STORED = frozenset(field.alias or name for name, field in CreateAgentRequest.model_fields.items())


def create(principal: Principal, body: CreateAgentRequest) -> Agent:
    """Save a new agent owned by the caller.

    Raises:
        Forbidden: The caller has no user yet.
    """
    owner = _require_user(principal)
    agent_id = str(uuid.uuid4())
    record = revisions.new_owned(
        owner, body.model_dump(by_alias=True, mode="json", exclude_none=True)
    )
    _agents().document(agent_id).create(record)
    return _to_agent(agent_id, record)


def list_agents(principal: Principal, query: ListQuery) -> Page[list[Agent]]:
    """A page of the caller's agents (every user's, for an admin asking for all), newest first.

    Raises:
        Forbidden: `all` asked for by someone who is not an admin.
        InvalidInput: A cursor that is not one of this list's.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    owner = _require_user(principal)
    if query.all_users and not principal.is_admin:
        raise Forbidden("Only admins may list every user's agents")
    collection = _agents()
    if not query.all_users:
        collection = collection.where(filter=FieldFilter("ownerId", "==", owner))
    order = [Order("createdAt", descending=True)]
    found, cursor = read_page(collection, order, query)
    agents = [
        _to_agent(snapshot.id, record) if (record := snapshot.to_dict() or {}).get("rev") else None
        for snapshot in found
    ]
    sizes = [len(agent.model_dump_json(by_alias=True)) if agent else 0 for agent in agents]
    kept, cursor = fit(found, cursor, order, sizes)
    return Page([agent for agent in agents[:kept] if agent is not None], cursor)


def _owned(principal: Principal, agent_id: str) -> dict[str, Any]:
    return owned_record(principal, _agents().document(agent_id).get().to_dict(), "Agent")


def get(principal: Principal, agent_id: str) -> Agent:
    """One agent (owner or admin).

    Raises:
        NotFound: No such agent, or someone else's.
    """
    return _to_agent(agent_id, _owned(principal, agent_id))


def update(principal: Principal, agent_id: str, body: UpdateAgentRequest) -> Agent:
    """Merge the sent fields into an agent, keeping its owner and creation time.

    Raises:
        NotFound: No such agent, or someone else's.
        Conflict: `_rev` was given and the agent has changed since.
    """
    sent = body.model_dump(by_alias=True, mode="json", exclude_unset=True, exclude={"rev"})

    def decide(record: dict[str, Any] | None) -> Plan[Agent]:
        record = owned_record(principal, record, "Agent")
        changes = revisions.revise(record, body.rev, sent, "agent")
        return Plan(_to_agent(agent_id, {**record, **changes}), update=changes)

    return write_if_unchanged(_agents().document(agent_id), decide)


def delete(principal: Principal, agent_id: str) -> None:
    """Delete an agent and every deployment of it (owner or admin).

    Raises:
        NotFound: No such agent, or someone else's.
    """
    _owned(principal, agent_id)
    batch = _undeploy_batch(agent_id)
    batch.delete(_agents().document(agent_id))
    batch.commit()


def chain(principal: Principal, agent_id: str) -> Chain:
    """The agents an agent calls, transitively, and the MCP servers they use.

    Agents that are missing or someone else's appear as `missing` nodes; a
    call back into the current path is an edge marked `cyclic`; agents past
    `CHAIN_MAX_DEPTH`, or met once `CHAIN_MAX_AGENTS` agents are in the
    chain, are `truncated` leaves. Each agent is read and expanded once, so a
    request reads at most `CHAIN_MAX_AGENTS` agents however they call each
    other.

    Raises:
        NotFound: No such agent, or someone else's.
    """
    _owned(principal, agent_id)
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    loaded: dict[str, dict[str, Any] | None] = {}
    expanded: set[str] = set()

    def load(node_id: str) -> dict[str, Any] | None:
        if node_id not in loaded:
            record = _agents().document(node_id).get().to_dict()
            allowed = record and can_access_owned(principal, record.get("ownerId"))
            loaded[node_id] = record if allowed else None
        return loaded[node_id]

    def visit(node_id: str, depth: int, path: frozenset[str]) -> bool:
        if node_id in path:
            return False
        if node_id in expanded:
            return True
        truncated = depth > CHAIN_MAX_DEPTH or (
            node_id not in loaded and len(loaded) >= CHAIN_MAX_AGENTS
        )
        record = None if truncated else load(node_id)
        node = {
            "id": node_id,
            "type": "agent",
            "name": (record or {}).get("name", "(missing)"),
            "description": (record or {}).get("description", ""),
            "input_schema": (record or {}).get("inputSchema") or {},
            "output_schema": (record or {}).get("outputSchema") or {},
            "missing": record is None and not truncated,
            "truncated": truncated,
        }
        if record is None:
            nodes.setdefault(node_id, node)
            return True
        nodes[node_id] = node
        expanded.add(node_id)
        for url, tool_names in (record.get("tools") or {}).items():
            server = f"mcp:{url}"
            names = list(tool_names or [])
            nodes.setdefault(
                server,
                {"id": server, "type": "mcp_server", "url": url, "tool_count": len(names)}
                | {"tools": names},
            )
            edges.append({"from": node_id, "to": server, "type": "uses_tools", "tools": names})
        for called in record.get("gofannonAgents") or []:
            acyclic = visit(called, depth + 1, path | {node_id})
            edges.append({"from": node_id, "to": called, "type": "calls", "cyclic": not acyclic})
        return True

    visit(agent_id, 0, frozenset())
    return Chain(root=agent_id, nodes=nodes, edges=edges)


def _deployments_of(agent_id: str) -> list[Any]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = _deployments().where(filter=FieldFilter("agentId", "==", agent_id))
    return list(query.stream())


def deploy(principal: Principal, agent_id: str, query: DeployQuery) -> Deployed:
    """Publish an agent at `/rest/{friendlyName}` (a new name replaces its older one).

    Raises:
        NotFound: No such agent, or someone else's.
        BadRequest: The agent has no friendly name.
        Conflict: Another agent holds the name.
    """
    existing = _deployments_of(agent_id)

    def decide(record: dict[str, Any] | None) -> Plan[Deployed]:
        record = owned_record(principal, record, "Agent")
        name = record.get("friendlyName")
        if not name:
            raise BadRequest("Agent must have a friendly_name to be deployed.")
        ref = _deployments().document(name)
        held = ref.get().to_dict()
        endpoint = f"/rest/{name}"
        if held is not None and held.get("agentId") != agent_id:
            raise Conflict(
                f"A deployment with the name '{name}' already exists for a different agent."
            )
        stale = [snapshot.reference for snapshot in existing if snapshot.id != name]
        if held is not None:
            result = Deployed(message="Agent is already deployed", endpoint=endpoint)
            changed = (
                [(ref, {"public": query.public})] if held.get("public") != query.public else []
            )
            return Plan(result, also_set=changed, deletes=stale)
        deployment = {
            "agentId": agent_id,
            "ownerId": record["ownerId"],
            "public": query.public,
            "createdAt": datetime.now(UTC),
        }
        return Plan(
            Deployed(message="Agent deployed successfully", endpoint=endpoint),
            update={"rev": record["rev"]},
            creates=[(ref, deployment)],
            deletes=stale,
        )

    return write_if_unchanged(_agents().document(agent_id), decide)


def undeploy(principal: Principal, agent_id: str) -> None:
    """Remove every deployment of an agent (nothing to do is not an error).

    Raises:
        NotFound: No such agent, or someone else's.
    """
    _owned(principal, agent_id)
    _undeploy_batch(agent_id).commit()


def _undeploy_batch(agent_id: str) -> WriteBatch:
    """A batch that deletes every deployment of an agent (commit it, or add to it)."""
    batch = clients.firestore().batch()
    for snapshot in _deployments_of(agent_id):
        batch.delete(snapshot.reference)
    return batch


def deployment(principal: Principal, agent_id: str) -> DeploymentStatus:
    """Whether an agent is deployed, and under which name.

    Raises:
        NotFound: No such agent, or someone else's.
    """
    _owned(principal, agent_id)
    found = _deployments_of(agent_id)
    if not found:
        return DeploymentStatus(is_deployed=False)
    held = found[0].to_dict() or {}
    return DeploymentStatus(
        is_deployed=True, friendly_name=found[0].id, public=bool(held.get("public"))
    )


def _may_call(user_id: str, admin: bool, record: dict[str, Any]) -> bool:
    return record.get("ownerId") == user_id or record.get("public") is True or admin


def _own_deployments(user_id: str, page: PageQuery) -> tuple[list[Any], str | None]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    owned = _deployments().where(filter=FieldFilter("ownerId", "==", user_id))
    return read_page(owned, [], page)


def _chosen(user_id: str, admin: bool) -> list[tuple[str, dict[str, Any]]]:
    """The caller's chosen deployments that exist and that they may still call, by name."""
    names = (_choices(user_id).get().to_dict() or {}).get("names") or []
    refs = [_deployments().document(name) for name in names]
    found = [
        (snapshot.id, snapshot.to_dict() or {})
        for snapshot in (clients.firestore().get_all(refs) if refs else [])
        if snapshot.exists
    ]
    return sorted(
        (name, record)
        for name, record in found
        if record.get("ownerId") != user_id and _may_call(user_id, admin, record)
    )


def _named(snapshots: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(snapshot.id, snapshot.to_dict() or {}) for snapshot in snapshots]


def _with_agents(
    deployments: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    refs = [_agents().document(record["agentId"]) for _, record in deployments]
    loaded: dict[str, dict[str, Any]] = {
        snapshot.id: snapshot.to_dict() or {}
        for snapshot in (clients.firestore().get_all(refs) if refs else [])
        if snapshot.exists
    }
    return [
        (name, record, loaded[record["agentId"]])
        for name, record in deployments
        if record["agentId"] in loaded
    ]


def _apis(deployments: list[tuple[str, dict[str, Any]]]) -> list[DeployedApi]:
    return [
        DeployedApi(
            friendly_name=name,
            agent_id=record["agentId"],
            description=agent.get("description") or "",
            input_schema=agent.get("inputSchema") or {},
            output_schema=agent.get("outputSchema") or {},
        )
        for name, record, agent in _with_agents(deployments)
    ]


def _api_page(
    found: list[Any], cursor: str | None, before: list[DeployedApi] | None = None
) -> Page[list[DeployedApi]]:
    """A page of deployments (by name) as APIs, cut to `PAGE_BYTES`, after `before`."""
    apis = {api.friendly_name: api for api in _apis(_named(found))}
    sizes = [
        len(api.model_dump_json(by_alias=True)) if (api := apis.get(snapshot.id)) else 0
        for snapshot in found
    ]
    kept, cursor = fit(found, cursor, [], sizes)
    listed = [apis[snapshot.id] for snapshot in found[:kept] if snapshot.id in apis]
    return Page([*(before or []), *listed], cursor)


def list_deployments(principal: Principal, query: DeploymentsQuery) -> Page[list[DeployedApi]]:
    """A page of the deployments the caller owns, by name; the first page starts with the chosen.

    With `all` (admins): a page of every deployment, by name.

    Raises:
        Forbidden: `all` asked for by someone who is not an admin.
        InvalidInput: A cursor that is not one of this list's.
    """
    user_id = _require_user(principal)
    if query.all_users:
        if not principal.is_admin:
            raise Forbidden("Only admins may list every deployment")
        return _api_page(*read_page(_deployments(), [], query))
    found, cursor = _own_deployments(user_id, query)
    chosen = _apis(_chosen(user_id, principal.is_admin)) if query.cursor is None else []
    return _api_page(found, cursor, chosen)


def list_public(principal: Principal, query: PageQuery) -> Page[list[DeployedApi]]:
    """A page of every public deployment, by name (to find one to choose).

    Raises:
        InvalidInput: A cursor that is not one of this list's.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    _require_user(principal)
    public = _deployments().where(filter=FieldFilter("public", "==", True))
    return _api_page(*read_page(public, [], query))


def _choices(user_id: str) -> Any:
    return clients.firestore().collection(CHOICES).document(user_id)


def choose(principal: Principal, friendly_name: str) -> ChosenDeployments:
    """Add a deployment the caller may call to their chosen ones (already there: no change).

    Raises:
        NotFound: No such deployment, or one the caller may not call.
        Conflict: `MAX_CHOSEN` are chosen already.
    """
    user_id = _require_user(principal)
    valid = re.fullmatch(_FRIENDLY_NAME, friendly_name) is not None
    record = _deployments().document(friendly_name).get().to_dict() if valid else None
    if record is None or not _may_call(user_id, principal.is_admin, record):
        raise NotFound(NOT_DEPLOYED)

    def decide(current: dict[str, Any] | None) -> Plan[ChosenDeployments]:
        names = list((current or {}).get("names") or [])
        if friendly_name in names:
            return Plan(ChosenDeployments(names=names))
        if len(names) >= MAX_CHOSEN:
            raise Conflict(f"At most {MAX_CHOSEN} deployments may be chosen; remove one first")
        names = sorted([*names, friendly_name])
        update = {"userId": user_id, "names": names, "updatedAt": datetime.now(UTC)}
        return Plan(ChosenDeployments(names=names), update=update)

    return write_if_unchanged(_choices(user_id), decide)


def unchoose(principal: Principal, friendly_name: str) -> None:
    """Remove a deployment from the caller's chosen ones (not there is not an error)."""
    user_id = _require_user(principal)

    def decide(current: dict[str, Any] | None) -> Plan[None]:
        names = list((current or {}).get("names") or [])
        if friendly_name not in names:
            return Plan(None)
        names.remove(friendly_name)
        return Plan(None, update={"names": names, "updatedAt": datetime.now(UTC)})

    write_if_unchanged(_choices(user_id), decide)


class GofannonModel(Model):
    """A deployed agent offered as a chat model."""

    id: str
    description: str
    parameters: dict[str, dict[str, Any]]


class GofannonProvider(Model):
    """Provider `gofannon` in `GET /providers`: deployed agents keyed by friendly name."""

    displayName: str = "Gofannon agents"  # noqa: N815 - API field name
    models: dict[str, GofannonModel]


def gofannon_provider(principal: Principal) -> GofannonProvider | None:
    """The caller's first `MAX_OWN_MODELS` deployments and their chosen ones, as a provider.

    None when there are none. Other users' public deployments are offered
    only once chosen (`PUT /deployments/{name}/chosen`).
    """
    if not principal.user_id:
        return None
    own, _ = _own_deployments(principal.user_id, PageQuery(limit=MAX_OWN_MODELS))
    chosen = _chosen(principal.user_id, principal.is_admin)
    models = {
        name: GofannonModel(
            id=record["agentId"],
            description=agent.get("description") or "",
            parameters={
                key: {"type": kind, "description": key, "default": ""}
                for key, kind in (agent.get("inputSchema") or {}).items()
            },
        )
        for name, record, agent in _with_agents(_named(own) + chosen)
    }
    return GofannonProvider(models=models) if models else None


def deployed_agent(user_id: str, is_admin: Callable[[], bool], friendly_name: str) -> DeployedAgent:
    """The deployment `friendly_name` if this caller may call it (see the module's rule).

    Args:
        user_id: The caller.
        is_admin: Whether the caller is an admin (asked only for others' private deployments).
        friendly_name: The deployment's name.

    Raises:
        NotFound: No such deployment, or one the caller may not call.
    """
    valid = re.fullmatch(_FRIENDLY_NAME, friendly_name) is not None
    record = _deployments().document(friendly_name).get().to_dict() if valid else None
    allowed = record is not None and (
        record.get("ownerId") == user_id or record.get("public") is True or is_admin()
    )
    agent = _agents().document(record["agentId"]).get().to_dict() if record and allowed else None
    if agent is None:
        raise NotFound(NOT_DEPLOYED)
    return DeployedAgent(
        friendly_name=friendly_name,
        agent_id=record["agentId"] if record else "",
        code=agent.get("code") or "",
        tools=agent.get("tools") or {},
        gofannon_agents=agent.get("gofannonAgents") or [],
        output_schema=agent.get("outputSchema"),
        owner_id=str(record["ownerId"]) if record else "",
        namespaces=declared_namespaces(agent),
    )


def callable_without_admin(user_id: str, friendly_names: list[str]) -> list[str]:
    """The names among `friendly_names` that `user_id` may call with no admin rights.

    Those are the user's own deployments and public ones, in the order given
    (a demo's capability covers only these: a demo cannot make its viewer's
    page call a private deployment its owner could not call).
    """
    valid = [name for name in dict.fromkeys(friendly_names) if re.fullmatch(_FRIENDLY_NAME, name)]
    refs = [_deployments().document(name) for name in valid]
    allowed = {
        snapshot.id
        for snapshot in (clients.firestore().get_all(refs) if refs else [])
        if (record := snapshot.to_dict())
        and (record.get("ownerId") == user_id or record.get("public") is True)
    }
    return [name for name in valid if name in allowed]


def callable_agent(user_id: str, agent_ids: list[str], name: str) -> dict[str, Any]:
    """The agent called `name` among `agent_ids` that `user_id` owns (for `gofannon_client`).

    Raises:
        NotFound: No agent of that name among them.
    """
    refs = [_agents().document(agent_id) for agent_id in agent_ids]
    for snapshot in clients.firestore().get_all(refs) if refs else []:
        record = snapshot.to_dict()
        if record and record.get("ownerId") == user_id and record.get("name") == name:
            return record
    raise NotFound(f"Gofannon agent '{name}' not found or not imported for this run.")


def documented(user_id: str, agent_ids: list[str]) -> list[dict[str, Any]]:
    """The name, description and docstring of those of `agent_ids` that `user_id` owns."""
    refs = [_agents().document(agent_id) for agent_id in agent_ids]
    found = []
    for snapshot in clients.firestore().get_all(refs) if refs else []:
        record = snapshot.to_dict()
        if record and record.get("ownerId") == user_id:
            found.append(
                {
                    "name": record.get("name", ""),
                    "description": record.get("description", ""),
                    "docstring": record.get("docstring") or "",
                }
            )
    return found


def delete_user_data(user_id: str) -> None:
    """Delete a user's deployments, then their agents and chosen deployments (re-runnable)."""
    for collection in (DEPLOYMENTS, AGENTS):
        erasure.delete_matching(erasure.belonging_to(collection, user_id, field="ownerId"))
    _choices(user_id).delete()


def export_user_data(user_id: str, limit: int) -> dict[str, Any]:
    """Return a user's agents and deployments (at most `limit` of each) and their chosen ones."""
    exported: dict[str, Any] = {}
    for name, collection in (("agents", AGENTS), ("deployments", DEPLOYMENTS)):
        query = erasure.belonging_to(collection, user_id, field="ownerId").limit(limit)
        exported[name] = [{"id": s.id, **(s.to_dict() or {})} for s in query.stream()]
    exported["chosenDeployments"] = (_choices(user_id).get().to_dict() or {}).get("names") or []
    return exported
