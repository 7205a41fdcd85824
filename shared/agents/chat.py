"""Chat tickets and session configuration.

`POST /chat` writes `tickets/{ticketId}` (status `pending`, owner) and only
then enqueues it on `chat-tickets`, so polling never races the worker. The
worker moves the ticket to `processing` under a lease, reserves the
estimated cost, calls the model through the LLM gateway, and in one atomic
write settles the charge, appends the ledger entry (id = ticket id) and
marks the ticket `completed` with `{content, thoughts, model, usage, cost}`.
A failed call releases the reservation and marks the ticket `failed` with
the error, charging nothing. A completed or failed ticket is never run
again; a ticket whose worker died is taken over once its lease has expired.

Provider `gofannon` chats with a deployed agent (model = its friendly
name) the caller may call: the last user message is its `inputText`
(the request's parameters are the rest of its input), and the reply is
its result's `outputText` (or the whole result as JSON). The ticket itself
costs nothing; the agent's own model calls are charged as agent runs.

Sessions (`POST/GET /sessions/{id}/config`, `DELETE /sessions/{id}`) are
per owner: the id a client names is looked up among the caller's own
sessions only (`sessions/{ownerId}:{sessionId}`), so another user's session
with the same id is neither readable, writable nor detectable (404, and a
save creates the caller's own), admins included. Sessions stored before
this scoping (`sessions/{sessionId}`) are moved by
`migrations.m002_owner_scoped_sessions`.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field

from shared.agents import accounts, agents, api_keys, metering, runs
from shared.llm import gateway
from shared.platform import clients, erasure, tasks
from shared.platform.auth import Principal, owned_record
from shared.platform.config import get_settings
from shared.platform.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    PaymentRequired,
    Unavailable,
)
from shared.platform.models import Model
from shared.platform.transactions import Plan, write_if_unchanged
from shared.platform.values import StorableMap

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

logger = logging.getLogger(__name__)

TICKETS = "tickets"
SESSIONS = "sessions"
QUEUE = "chat-tickets"
GOFANNON = "gofannon"
TicketStatus = Literal["pending", "processing", "completed", "failed"]


class ChatRequest(gateway.LlmRequest):
    """A chat: the conversation, provider, model, parameters and built-in tools.

    `stream` is accepted as the gofannon web UI sends it (`false`): answers
    are always tickets, so asking for a stream is refused.
    """

    stream: Literal[False] = Field(
        default=False, description="Always false: answers come as tickets to poll"
    )


class TicketCreated(Model):
    """The answer to `POST /chat`."""

    ticket_id: str
    status: TicketStatus


class TicketPayload(Model):
    """The `chat-tickets` task body."""

    ticketId: str = Field(min_length=1, max_length=64)  # noqa: N815


class ChatResponse(Model):
    """A ticket as its owner sees it."""

    ticket_id: str
    status: TicketStatus
    result: gateway.LlmResult | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class ProviderConfigBody(Model):
    """The provider configuration of a session."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    parameters: StorableMap = Field(default_factory=dict)


class SessionSaved(Model):
    """The answer to saving a session's configuration."""

    message: str
    session_id: str


class SessionDeleted(Model):
    """The answer to deleting a session."""

    message: Literal["Session deleted"] = "Session deleted"


def create_ticket(principal: Principal, request: ChatRequest) -> TicketCreated:
    """Validate a chat, write its ticket, then enqueue it.

    Raises:
        InvalidInput: The request does not fit the catalog.
        PaymentRequired: Nothing is left of the caller's allowance.
        Unavailable: The queue could not take the ticket (the ticket is marked failed).
    """
    if not principal.user_id:
        raise Forbidden("Create your user first")
    keyed: list[str] = []
    if request.provider == GOFANNON:
        _agent_input(request)
        try:
            agents.deployed_agent(principal.user_id, lambda: principal.is_admin, request.model)
        except NotFound as exc:
            raise InvalidInput(agents.NOT_DEPLOYED, ("body", "model")) from exc
    else:
        keyed = api_keys.keyed_providers(principal.user_id)
        gateway.prepare(request, keyed)
    own_key_pays = request.provider in keyed
    if not own_key_pays and accounts.get_account(principal).usageInfo.spendRemaining <= 0:
        raise PaymentRequired("Allowance exhausted")
    ticket_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    ref = clients.firestore().collection(TICKETS).document(ticket_id)
    ref.create(
        {
            "ticketId": ticket_id,
            "ownerId": principal.user_id,
            "status": "pending",
            "request": request.model_dump(mode="json", exclude={"stream"}),
            "callerAdmin": request.provider == GOFANNON and principal.is_admin,
            "result": None,
            "error": None,
            "createdAt": now,
            "updatedAt": now,
        }
    )
    try:
        tasks.enqueue(QUEUE, TicketPayload(ticketId=ticket_id), dedup_name=f"chat-{ticket_id}")
    except Unavailable:
        ref.update({"status": "failed", "error": "Queue unavailable", "updatedAt": now})
        raise
    return TicketCreated(ticket_id=ticket_id, status="pending")


def get_ticket(principal: Principal, ticket_id: str) -> ChatResponse:
    """Return a ticket to its owner (or an admin).

    Raises:
        NotFound: No such ticket, or someone else's.
    """
    record = clients.firestore().collection(TICKETS).document(ticket_id).get().to_dict()
    record = owned_record(principal, record, "Ticket")
    return ChatResponse(
        ticket_id=ticket_id,
        status=record["status"],
        result=record.get("result"),
        error=record.get("error"),
        created_at=record["createdAt"],
        updated_at=record["updatedAt"],
    )


def run_ticket(ticket_id: str) -> None:
    """Run a ticket once (the `chat_worker` task handler).

    Raises:
        NotFound: No such ticket (the task is dropped).
        Unavailable: Another worker holds the ticket's lease (the task is retried).
    """
    ref = clients.firestore().collection(TICKETS).document(ticket_id)

    def claim(record: dict[str, Any] | None) -> Plan[dict[str, Any] | None]:
        now = datetime.now(UTC)
        if record is None:
            raise NotFound("Ticket not found")
        if record["status"] in ("completed", "failed"):
            return Plan(None)
        if record["status"] == "processing" and record.get("leaseUntil", now) > now:
            raise Unavailable("Ticket is being processed")
        lease = timedelta(seconds=get_settings().chat_lease_seconds)
        changes = {"status": "processing", "leaseUntil": now + lease, "updatedAt": now}
        return Plan({**record, **changes}, update=changes)

    ticket = write_if_unchanged(ref, claim)
    if ticket is None:
        return
    owner = ticket["ownerId"]
    if ticket.get("reservedMicros"):
        # A previous worker died holding a reservation: release it before starting over.
        held = int(ticket["reservedMicros"])
        accounts.settle(owner, held, 0, also_set=[(ref, {"reservedMicros": 0})])
    request = gateway.LlmRequest.model_validate(ticket["request"])
    if request.provider == GOFANNON:
        _run_agent_ticket(ref, ticket, request)
        return
    try:
        own_key = api_keys.own_key(owner, request.provider)
        estimate = 0 if own_key else accounts.to_micros(gateway.estimate_cost(request))
        if estimate:
            accounts.reserve(owner, estimate, also_set=[(ref, {"reservedMicros": estimate})])
    except DomainError as exc:
        ref.set(_finished("failed", exc.detail), merge=True)
        return
    try:
        result = gateway.complete(request, own_key)
    except DomainError as exc:
        logger.warning("chat ticket failed", extra={"ticket": ticket_id, "error": exc.detail})
        accounts.settle(owner, estimate, 0, also_set=[(ref, _finished("failed", exc.detail))])
        return
    entry = {**metering.usage_entry(request, result, "chat", own_key), "ticketId": ticket_id}
    outcome = {**_finished("completed", None), "result": result.model_dump(mode="json")}
    accounts.settle(
        owner,
        estimate,
        0 if own_key else accounts.to_micros(result.cost),
        ledger=(ticket_id, entry),
        also_set=[(ref, outcome)],
    )


def _agent_input(request: gateway.LlmRequest) -> dict[str, Any]:
    """The deployed agent's input: the parameters, and the last user message as `inputText`.

    Raises:
        InvalidInput: No user message.
    """
    last = next((m.content for m in reversed(request.messages) if m.role == "user"), None)
    if last is None:
        raise InvalidInput("No user message to run the agent with", ("body", "messages"))
    return {**request.parameters, "inputText": last}


def _run_agent_ticket(ref: Any, ticket: dict[str, Any], request: gateway.LlmRequest) -> None:
    """Run a `gofannon` ticket: its deployed agent, as the ticket's owner."""
    owner = ticket["ownerId"]
    try:
        admin = bool(ticket.get("callerAdmin"))
        agent = agents.deployed_agent(owner, lambda: admin, request.model)
        caller = Principal(kind="firebase", subject=owner, user_id=owner)
        result = runs.run_deployment(caller, agent, _agent_input(request))
    except DomainError as exc:
        logger.warning("agent chat ticket failed", extra={"ticket": ticket["ticketId"]})
        ref.set(_finished("failed", exc.detail), merge=True)
        return
    if isinstance(result, dict):
        output = result.get("outputText")
        content = output if isinstance(output, str) else json.dumps(result, default=str)
        thoughts: str | None = json.dumps(result, default=str)
    else:
        content, thoughts = str(result), None
    answer = gateway.LlmResult(
        content=content,
        thoughts=thoughts,
        model=request.model,
        usage=gateway.Usage(input_tokens=0, output_tokens=0),
        cost=0.0,
    )
    ref.set({**_finished("completed", None), "result": answer.model_dump(mode="json")}, merge=True)


def _finished(status: TicketStatus, error: str | None) -> dict[str, Any]:
    return {"status": status, "error": error, "reservedMicros": 0, "updatedAt": datetime.now(UTC)}


def session_ref(owner_id: str, session_id: str) -> DocumentReference:
    """The document of one user's session: `sessions/{ownerId}:{sessionId}`.

    Session ids are chosen by clients (the web UI makes them up), so they
    are scoped by their owner: two users' sessions never share a document,
    whatever ids they pick, and nobody can take an id before its owner does.
    A session id never holds `:` (`DocId`), so the document id names one
    owner and one session.
    """
    return clients.firestore().collection(SESSIONS).document(f"{owner_id}:{session_id}")


def save_session(principal: Principal, session_id: str, body: ProviderConfigBody) -> SessionSaved:
    """Create or update one of the caller's sessions.

    Raises:
        InvalidInput: The configuration does not fit the catalog.
        Forbidden: The caller has no user id yet.
    """
    if not principal.user_id:
        raise Forbidden("Create your user first")
    keyed = api_keys.keyed_providers(principal.user_id)
    gateway.check_config(body.provider, body.model, body.parameters, keyed=keyed)
    owner_id = principal.user_id

    def decide(record: dict[str, Any] | None) -> Plan[SessionSaved]:
        now = datetime.now(UTC)
        data = {
            "sessionId": session_id,
            "ownerId": owner_id,
            "provider_config": body.model_dump(),
            "updatedAt": now,
            "createdAt": (record or {}).get("createdAt", now),
        }
        return Plan(
            SessionSaved(message="Session config saved", session_id=session_id), update=data
        )

    return write_if_unchanged(session_ref(owner_id, session_id), decide)


def _owned_session(principal: Principal, session_id: str) -> tuple[Any, dict[str, Any]]:
    """One of the caller's own sessions (another user's id names nothing: 404 alike)."""
    if not principal.user_id:
        raise NotFound("Session not found")
    ref = session_ref(principal.user_id, session_id)
    return ref, owned_record(principal, ref.get().to_dict(), "Session")


def get_session(principal: Principal, session_id: str) -> ProviderConfigBody:
    """Return one of the caller's sessions' provider configuration.

    Raises:
        NotFound: The caller has no session with this id.
    """
    _, record = _owned_session(principal, session_id)
    return ProviderConfigBody.model_validate(record["provider_config"])


def delete_session(principal: Principal, session_id: str) -> SessionDeleted:
    """Delete one of the caller's sessions.

    Raises:
        NotFound: The caller has no session with this id.
    """
    ref, _ = _owned_session(principal, session_id)
    ref.delete()
    return SessionDeleted()


def delete_user_data(user_id: str) -> None:
    """Delete a user's chat tickets and sessions (re-runnable)."""
    for collection in (TICKETS, SESSIONS):
        erasure.delete_matching(erasure.belonging_to(collection, user_id, field="ownerId"))


def export_user_data(user_id: str, limit: int) -> dict[str, Any]:
    """Return a user's chat tickets and sessions (at most `limit` of each)."""
    return {
        name: [
            snapshot.to_dict() or {}
            for snapshot in erasure.belonging_to(collection, user_id, field="ownerId")
            .limit(limit)
            .stream()
        ]
        for name, collection in (("tickets", TICKETS), ("sessions", SESSIONS))
    }
