"""LinkedIn augmentation: the user's own profile data, and archetype users from their network.

`POST /users/{user_id}/augment` (`request_augmentation`) starts a run: it
writes `metadata.augmentation = {runId, status: "queued", total, done: 0,
failed: 0, requested_at}` on the user and enqueues, on `archetype-generation`,
one task to enrich the user and one per contact of `metadata.network` (task
names `augment-{runId}-{index}`, so a repeated enqueue is one task). A run
still queued refuses a second one (409) until it is an hour old. Each run
costs the platform a person-data lookup and a model call per contact, so a
non-admin may start `AUGMENTATIONS_PER_USER_PER_DAY` runs in 24 hours (429
with `Retry-After` beyond).

The worker (`run_task`, in `archetype_worker`) is idempotent:

- the user's own task looks the user up through the person-data adapter and
  stores `metadata.linkedin_info = {url, content}`;
- a contact's task looks the contact up, asks the LLM gateway (charged to the
  platform, structured output) for `{name{first,last}, bio, probability}` and
  commits, in one atomic write, the archetype user (`metadata.archetype`,
  `referredBy` the user, id derived from the user id and the contact's email
  under `ARCHETYPE_ID_SECRET`), the `archetype` match with that probability,
  the task's result document and the counter increment. An archetype that
  already exists (a second run, a retried task) is reused, never duplicated.

Each task's result is a document `augmentation_results/{runId}-{index}`
created in the same commit as its counter increment, so a retried or
duplicated task counts once, and counters never contend (increments, no
preconditions). The task that finds every task counted sets the status:
`completed`, or `completed_with_errors` when some failed. A 402 from the
provider stops the run (`status: "stopped"`, `error`); later tasks count as
failed without calling anyone. A 429 or an outage is retried by Cloud Tasks
(503) up to `ARCHETYPE_TASK_ATTEMPTS` deliveries, after which the task
counts as failed. With no provider configured, lookups are recorded as
`not_configured` and archetypes are generated from the network entry alone.

The model's answer is read leniently (`shared.llm.structured`). Outside
production, with no key for `ARCHETYPE_LLM_PROVIDER`, the local model
answers from a brief profile; its unusable answers (off the schema, or a
bio that is not prose) are not retried (they would be unusable again) but
replaced by `fallback_draft`.

Contacts' emails stay in the user's own `metadata.network` and the task
bodies: archetypes, matches, result documents and logs never hold them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, ValidationError

from shared.llm import gateway, structured
from shared.platform import clients, erasure, ratelimit, tasks
from shared.platform.auth import Principal, require_self_or_admin
from shared.platform.config import LOCAL_LLM_PROVIDER, get_settings
from shared.platform.errors import Conflict, DomainError, InvalidInput, Unavailable
from shared.platform.models import Model
from shared.platform.person_data import OutOfCredits, PersonMatch, PersonQuery
from shared.platform.tasks import TaskContext
from shared.platform.transactions import Plan, write_if_unchanged
from shared.social import matches, user_store, users
from shared.social.users import Name, User, to_user

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

logger = logging.getLogger(__name__)

QUEUE = "archetype-generation"
RESULTS = "augmentation_results"
_STALE_RUN = timedelta(hours=1)
_ENQUEUE_THREADS = 8
_TERMINAL = ("completed", "completed_with_errors", "stopped", "failed")
# The local model reads 2048 tokens in all: a brief profile and a short answer.
SMALL_MODEL_MAX_TOKENS = 200
_BRIEF_FIELDS = ("job_title", "job_company_name", "industry", "location_name")
_MIN_BIO_WORDS = 6

ARCHETYPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {
            "type": "object",
            "properties": {"first": {"type": "string"}, "last": {"type": "string"}},
            "required": ["first", "last"],
        },
        "bio": {"type": "string"},
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["name", "bio", "probability"],
}
_SYSTEM_PROMPT = (
    "You create an archetype: a fictional person standing for someone in the user's network,"
    " for a social introductions app. From the contact's details, answer JSON with a plausible"
    " name (first, last), a two-sentence bio in the third person (no contact details), and the"
    " probability (0 to 1) that an introduction between the user and such a person goes well."
)


class Contact(Model):
    """A network entry as a task carries it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    timeSpent: float = Field(ge=0, le=1e9)  # noqa: N815 - the seed's field name


class AugmentTask(Model):
    """One task of a run: the user's own enrichment (no contact) or one contact."""

    model_config = ConfigDict(extra="forbid")

    userId: str = Field(max_length=128)  # noqa: N815 - API field name
    runId: str = Field(pattern=r"^[0-9a-f]{32}$")  # noqa: N815 - API field name
    index: int = Field(ge=0, le=10_000)
    contact: Contact | None = None


class ArchetypeDraft(Model):
    """What the model answers for one contact."""

    name: Name
    bio: str = Field(min_length=1, max_length=2000)
    probability: float = Field(ge=0, le=1)


def request_augmentation(principal: Principal, user_id: str) -> User:
    """Start a run for a user and queue its tasks; answers at once.

    Args:
        principal: The user or an admin.
        user_id: The user to augment.

    Returns:
        The user, with `metadata.augmentation` queued.

    Raises:
        Forbidden: The caller is someone else.
        NotFound: No such user.
        Conflict: A run of this user is still queued (and less than an hour old).
        RateLimited: The caller started their daily number of runs already.
        Unavailable: The task queue could not be reached (the run is marked failed).
    """
    require_self_or_admin(principal, user_id)
    if not principal.is_admin:
        ratelimit.consume(
            f"augment:{user_id}",
            get_settings().augmentations_per_user_per_day,
            timedelta(days=1),
            "Too many augmentations today; try again later",
        )
    run_id = uuid.uuid4().hex
    contacts: list[Contact] = []

    def start(current: dict[str, Any]) -> dict[str, Any]:
        run = (current.get("metadata") or {}).get("augmentation") or {}
        requested = run.get("requested_at")
        fresh = requested is not None and requested > datetime.now(UTC) - _STALE_RUN
        if run.get("status") == "queued" and fresh:
            raise Conflict("An augmentation of this user is already running")
        contacts[:] = _contacts((current.get("metadata") or {}).get("network") or [])
        return {
            "metadata.augmentation": {
                "runId": run_id,
                "status": "queued",
                "total": len(contacts) + 1,
                "done": 0,
                "failed": 0,
                "requested_at": datetime.now(UTC),
                "finished_at": None,
                "enrichment": None,
                "error": None,
            }
        }

    record = user_store.update_profile(user_id, start)
    payloads = [AugmentTask(userId=user_id, runId=run_id, index=0)] + [
        AugmentTask(userId=user_id, runId=run_id, index=i + 1, contact=contact)
        for i, contact in enumerate(contacts)
    ]
    try:
        with ThreadPoolExecutor(_ENQUEUE_THREADS) as pool:
            list(pool.map(_enqueue, payloads))
    except Unavailable:
        user_store.update_augmentation(
            user_id, run_id, lambda run: {"status": "failed", "error": "Task queue unavailable"}
        )
        raise
    return to_user(record)


def _contacts(network: list[Any]) -> list[Contact]:
    """The network entries a task can carry (entries stored in an older shape are skipped)."""
    contacts = []
    for entry in network:
        try:
            contacts.append(Contact.model_validate(entry))
        except ValidationError:
            logger.warning("network entry skipped: not a valid contact")
    return contacts


def _enqueue(payload: AugmentTask) -> None:
    tasks.enqueue(QUEUE, payload, dedup_name=f"augment-{payload.runId}-{payload.index}")


def archetype_id(user_id: str, email: str) -> str:
    """The archetype's user id: a keyed hash of the user and the contact's email.

    Keyed (`ARCHETYPE_ID_SECRET`), so nobody can test whether someone's network
    holds an email by probing public profiles.
    """
    message = f"{user_id}\n{email.strip().lower()}".encode()
    digest = hmac.new(get_settings().archetype_secret(), message, hashlib.sha256).hexdigest()
    return f"archetype-{digest[:40]}"


def run_task(payload: AugmentTask, context: TaskContext) -> None:
    """Do one task of a run, once, however often it is delivered.

    Raises:
        Unavailable: A dependency failed and this was not the last attempt (retry).
        RateLimited: The provider limited us and this was not the last attempt (retry).
    """
    record = user_store.load_many([payload.userId]).get(payload.userId)
    run = ((record or {}).get("metadata") or {}).get("augmentation") or {}
    if record is None or run.get("runId") != payload.runId:
        logger.info("augmentation task of a replaced run dropped", extra={"run": payload.runId})
        return
    result_ref = _result_ref(payload)
    if result_ref.get().exists:
        _finish(payload)
        return
    last_attempt = context.retry_count + 1 >= get_settings().archetype_task_attempts
    try:
        if run.get("status") == "stopped":
            _record(payload, "failed", {"reason": "stopped"})
        elif payload.contact is None:
            _enrich_user(payload, record)
        else:
            _make_archetype(payload, payload.contact)
    except OutOfCredits as exc:
        _stop(payload, exc.detail)
        _record(payload, "failed", {"reason": "out_of_credits"})
    except DomainError as exc:
        if not last_attempt and not isinstance(exc, InvalidInput):
            raise
        logger.warning("augmentation task failed: %s", exc.detail, extra={"run": payload.runId})
        _record(payload, "failed", {"reason": type(exc).__name__})
    _finish(payload)


def _lookup(query: PersonQuery) -> tuple[str, PersonMatch | None]:
    """Ask the person-data provider; returns the outcome name and the match."""
    provider = clients.person_data()
    if provider is None:
        return "not_configured", None
    match = provider.enrich(query)
    return ("matched" if match else "no_match"), match


def _linkedin_info(match: PersonMatch | None) -> dict[str, Any] | None:
    return {"url": match.url, "content": match.content} if match else None


def _enrich_user(payload: AugmentTask, record: dict[str, Any]) -> None:
    name = record.get("name") or {}
    stored = (record["metadata"].get("linkedin_info") or {}).get("url")
    full_name = " ".join(part for part in (name.get("first"), name.get("last")) if part)
    query = PersonQuery(
        email=record.get("email"),
        profile=stored,
        name=full_name if full_name and full_name != "User" else None,
        location=record.get("location"),
    )
    outcome, match = _lookup(query)
    if match is not None:
        info = _linkedin_info(match)
        user_store.update_profile(payload.userId, lambda current: {"metadata.linkedin_info": info})
    user_store.update_augmentation(
        payload.userId, payload.runId, lambda run: {"enrichment": outcome}
    )
    _record(payload, "done", {"enrichment": outcome})


def _make_archetype(payload: AugmentTask, contact: Contact) -> None:
    aid = archetype_id(payload.userId, contact.email or contact.name)
    if user_store.exists(aid):
        _record(payload, "done", {"archetypeId": aid, "reused": True})
        return
    outcome, match = _lookup(PersonQuery(email=contact.email, name=contact.name))
    draft, cost = _draft(contact, match)
    archetype = users.new_profile_record(
        aid,
        name=draft.name.model_dump(),
        bio=draft.bio,
        location=match.content.get("location_name") if match else None,
        metadata={
            "archetype": True,
            "referredBy": payload.userId,
            "linkedin_info": _linkedin_info(match),
        },
    )
    result = _result_data(
        payload, "done", {"archetypeId": aid, "enrichment": outcome, "modelCost": cost}
    )
    try:
        user_store.create_profile(
            aid,
            archetype,
            also=[],
            extra_creates=[
                matches.archetype_match(payload.userId, aid, draft.probability),
                (_result_ref(payload), result),
            ],
            extra_updates=[user_store.augmentation_increment(payload.userId, "done")],
        )
    except Conflict:
        # Made meanwhile by a duplicate of this task or by the same email listed twice.
        _record(payload, "done", {"archetypeId": aid, "reused": True})


def _draft(contact: Contact, match: PersonMatch | None) -> tuple[ArchetypeDraft, float]:
    """Ask the model for the archetype (the contact's email is never sent).

    Returns:
        The archetype and what the call cost the platform, in USD.

    Raises:
        Unavailable: A cloud model's answer did not match the schema (retried).
    """
    provider, model = get_settings().archetype_llm()
    small = provider == LOCAL_LLM_PROVIDER
    facts: dict[str, Any] = {"name": contact.name, "hoursSpentTogether": contact.timeSpent}
    if match is not None:
        facts["profile"] = _brief(match.content) if small else match.content
    request = gateway.LlmRequest(
        provider=provider,
        model=model,
        messages=[
            gateway.Message(role="system", content=_SYSTEM_PROMPT),
            gateway.Message(role="user", content=json.dumps(facts, default=str)),
        ],
        parameters={"temperature": 0.7, "max_tokens": SMALL_MODEL_MAX_TOKENS if small else 1024},
        responseSchema=ARCHETYPE_SCHEMA,
    )
    answer = gateway.complete(request)
    try:
        draft = ArchetypeDraft.model_validate(structured.json_object(answer.content))
    except ValidationError as exc:
        if not small:
            raise Unavailable("The model's archetype did not match the schema") from exc
        draft = None
    if draft is None or (small and not is_prose(draft.bio)):
        logger.info("local model's archetype unusable; drafted from the contact")
        return fallback_draft(contact, match), answer.cost
    return draft, answer.cost


def is_prose(text: str) -> bool:
    """Tell whether a small model's bio reads as sentences (not a fragment, JSON or a template)."""
    return len(text.split()) >= _MIN_BIO_WORDS and not any(mark in text for mark in '{}[]"')


def _brief(profile: dict[str, Any]) -> dict[str, Any]:
    """The few profile facts a small model's context holds."""
    return {key: profile[key] for key in _BRIEF_FIELDS if profile.get(key)}


def fallback_draft(contact: Contact, match: PersonMatch | None) -> ArchetypeDraft:
    """The archetype made from the contact alone, when the local model's answer is unusable.

    The name is the network entry's, the bio states the person-data facts (or
    that they are in the user's network), and the probability grows with the
    hours spent together (0.3 with none, 0.9 from 100 hours on).
    """
    first, _, last = contact.name.strip().partition(" ")
    profile = match.content if match is not None else {}
    title, company = profile.get("job_title"), profile.get("job_company_name")
    work = " at ".join(str(part).title() for part in (title, company) if part)
    place = str(profile.get("location_name") or "").title()
    bio = f"{first or 'They'} works as {work}" if work else f"{first or 'They'} is in your network"
    bio += f", based in {place}." if place else "."
    return ArchetypeDraft(
        name=Name(first=(first or "Someone")[:100], last=(last.strip() or "Unknown")[:100]),
        bio=bio[:2000],
        probability=round(0.3 + 0.6 * min(contact.timeSpent, 100) / 100, 2),
    )


def _result_ref(payload: AugmentTask) -> DocumentReference:
    return clients.firestore().collection(RESULTS).document(f"{payload.runId}-{payload.index}")


def _result_data(payload: AugmentTask, counter: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "userId": payload.userId,
        "runId": payload.runId,
        "index": payload.index,
        "counted": counter,
        **details,
        "finishedAt": datetime.now(UTC),
    }


def _record(payload: AugmentTask, counter: str, details: dict[str, Any]) -> None:
    """Create the task's result document and count it, once (a second call writes nothing)."""
    data = _result_data(payload, counter, details)

    def decide(current: dict[str, Any] | None) -> Plan[None]:
        if current is not None:
            return Plan(None)
        return Plan(
            None,
            update=data,
            updates=[user_store.augmentation_increment(payload.userId, counter)],
        )

    write_if_unchanged(_result_ref(payload), decide)


def _stop(payload: AugmentTask, reason: str) -> None:
    def stop(run: dict[str, Any]) -> dict[str, Any] | None:
        if run.get("status") in _TERMINAL:
            return None
        return {"status": "stopped", "error": reason}

    user_store.update_augmentation(payload.userId, payload.runId, stop)


def _finish(payload: AugmentTask) -> None:
    """Settle the run's status once every task is counted."""

    def finish(run: dict[str, Any]) -> dict[str, Any] | None:
        counted = int(run.get("done") or 0) + int(run.get("failed") or 0)
        if counted < int(run.get("total") or 0) or run.get("finished_at") is not None:
            return None
        status = run.get("status")
        if status == "queued":
            status = "completed_with_errors" if run.get("failed") else "completed"
        return {"status": status, "finished_at": datetime.now(UTC)}

    user_store.update_augmentation(payload.userId, payload.runId, finish)


def _results_of(user_id: str) -> Any:
    return erasure.belonging_to(RESULTS, user_id)


def delete_user_data(user_id: str) -> None:
    """Delete the result documents of a user's augmentation runs (re-runnable)."""
    erasure.delete_matching(_results_of(user_id))


def export_user_data(user_id: str, limit: int) -> list[dict[str, Any]]:
    """Return the result documents of a user's augmentation runs (at most `limit`)."""
    return [snapshot.to_dict() or {} for snapshot in _results_of(user_id).limit(limit).stream()]
