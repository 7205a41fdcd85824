"""The iMessage concierge: LoopMessage webhooks, conversations and replies.

This module owns `conversations/{contact}` (one per phone number or email),
its `messages` sub-collection, and `webhook_events/{webhookId}`.

The webhook (`receive`) only records and acknowledges; everything else runs
in the `agent-replies` worker (`reply`):

- a delivery is de-duplicated by its `webhook_id`: the event document is
  created (a `Plan.creates` claim) in the same commit that stores the
  message and bumps the conversation's `generation`, so a retried delivery
  changes nothing; the reply task is enqueued after the commit and the
  event marked `enqueued`, and a retry of a delivery whose enqueue failed
  enqueues it again;
- group messages are acknowledged and ignored; status events (sent,
  delivered, failed, timeout, reaction) update the outbound message they
  name (by our `passthrough`, else by LoopMessage's message id);
- double-texting: every inbound message bumps `generation` and queues a
  reply task for that generation, delayed by `IMESSAGE_DEBOUNCE_SECONDS`.
  A task whose generation is no longer the newest does nothing (checked
  before the model call and again, atomically, before sending), so a burst
  gets one reply that answers every unanswered message. `bump=true`
  re-processes the unanswered messages without a new one;
- sending is at most once: the reply's document `out-{generation}` is
  created (status `pending`) in the same commit that marks the generation
  answered; a worker moves it to `sending` by compare-and-set before calling
  LoopMessage, then to `sent`, `retry` (LoopMessage did not take it; the
  task is retried and sends again), `unconfirmed` (the request may have been
  taken but no answer says so: never re-sent; its status webhooks tell) or
  `failed`. A worker killed while `sending` leaves it so, and nothing sends
  it twice.

Replies come from the LLM gateway (charged to the platform, recorded on
the reply's document) with the concierge prompt, the last
`IMESSAGE_HISTORY_MESSAGES` messages and the user's profile; the model
answers `{reply, profile_updates}` (read leniently, `parse_answer`) and only
the allow-listed profile fields are applied. Outside production, with no
key for `IMESSAGE_PROVIDER`, the local model answers (a shorter history and
answer fit its context). Texters we do not know are registered as users
(`users.register_contact`). Image attachments are fetched through the
guarded fetcher (only from `LOOPMESSAGE_ATTACHMENT_HOSTS`), cleaned and
stored as the user's photos (the profile picture when they have none), and
described to the model.

The same worker sends close-loop's referrer notifications
(`notifications/{matchId}-referrer`, owned by `shared.social.matches`),
claimed and finished there with the same at-most-once states.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, ValidationError, model_validator

from shared.llm import gateway, structured
from shared.platform import clients, erasure, fetch, tasks
from shared.platform.auth import Principal
from shared.platform.config import LOCAL_LLM_PROVIDER, get_settings
from shared.platform.errors import DomainError, InvalidInput, NotFound, Unavailable
from shared.platform.models import Model
from shared.platform.paging import batches
from shared.platform.transactions import Plan, write_if_unchanged
from shared.platform.values import DOC_ID_PATTERN
from shared.social import matches, photos, pictures, user_store, users

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

logger = logging.getLogger(__name__)

CONVERSATIONS = "conversations"
MESSAGES = "messages"
WEBHOOK_EVENTS = "webhook_events"
# De-duplication records expire (Firestore TTL on `expireAt`) well after LoopMessage's
# last retry of a webhook (about 3.5 hours for the legacy API, 20 hours for the new one).
WEBHOOK_EVENT_RETENTION = timedelta(days=3)
QUEUE = "agent-replies"
CHANNEL = "imessage"
INBOUND = frozenset({"message_inbound", "message_reply"})
_DELIVERY = {
    "message_scheduled": "scheduled",
    "message_sent": "sent",
    "message_delivered": "delivered",
    "message_failed": "failed",
    "message_timeout": "timeout",
}
# The system acting on a texter's behalf (profile updates, their photos): never a caller.
SYSTEM = Principal(kind="firebase", subject="system:imessage", user_id=None, admin_claim=True)
PROFILE_FIELDS = ("first_name", "last_name", "bio", "age", "location")
MAX_ATTACHMENTS = 5
NOTIFICATION_PREFIX = "notification-"
MAX_UNANSWERED = 50
MAX_REPLY_CHARS = 9_999
# The local model reads 2048 tokens in all: a short history and a short answer.
SMALL_MODEL_HISTORY = 6
SMALL_MODEL_MAX_TOKENS = 200
FALLBACK_REPLY = (
    "Thanks for your message! I'm the Series concierge: tell me a little about"
    " yourself and who you would like to meet."
)

SYSTEM_PROMPT = (
    "You are the Series concierge, texting over iMessage. Series introduces people to"
    " others worth knowing through warm, personal introductions. Be warm, brief and"
    " natural: one to three short sentences, plain text, no markdown. The person may"
    " have sent several texts in a row: answer all of them in one reply. When they"
    " tell you facts about themselves (first name, last name, age, city, a short bio)"
    " put them in profile_updates; leave profile_updates empty otherwise and never"
    " invent facts. Photos they send are described in brackets."
)
RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reply": {"type": "string", "description": "The text to send back."},
        "profile_updates": {
            "type": "object",
            "properties": {
                "first_name": {"type": "string"},
                "last_name": {"type": "string"},
                "bio": {"type": "string"},
                "age": {"type": "integer"},
                "location": {"type": "string"},
            },
        },
    },
    "required": ["reply", "profile_updates"],
}

_Text = Annotated[str, Field(max_length=2048)]


class WebhookQuery(Model):
    """`?bump=true` re-processes the conversation's unanswered messages."""

    model_config = ConfigDict(extra="forbid")

    bump: bool = False


class Group(Model):
    """An iMessage group (`group_id` on the legacy API, `id` on the current one)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(default=None, max_length=200)
    group_id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=500)
    participants: list[_Text] = Field(default_factory=list, max_length=100)


class Speech(Model):
    """The transcription of an inbound voice message."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = Field(default=None, max_length=20_000)


class LoopWebhook(Model):
    """A LoopMessage delivery of either API generation.

    Unknown fields are ignored rather than refused: LoopMessage adds fields
    and event types without a new API version.
    """

    model_config = ConfigDict(extra="ignore")

    webhook_id: str = Field(min_length=1, max_length=200)
    alert_type: str | None = Field(default=None, max_length=64)
    event: str | None = Field(default=None, max_length=64)
    recipient: str | None = Field(default=None, max_length=320)
    contact: str | None = Field(default=None, max_length=320)
    text: str | None = Field(default=None, max_length=20_000)
    message_id: str | None = Field(default=None, max_length=200)
    attachments: list[_Text] = Field(default_factory=list, max_length=20)
    message_type: str | None = Field(default=None, max_length=64)
    delivery_type: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=64)
    group: Group | None = None
    sender_name: str | None = Field(default=None, max_length=200)
    sender: str | None = Field(default=None, max_length=200)
    thread_id: str | None = Field(default=None, max_length=200)
    error_code: int | None = None
    passthrough: str | None = Field(default=None, max_length=1000)
    reaction: str | None = Field(default=None, max_length=64)
    success: bool | None = None
    speech: Speech | None = None

    @model_validator(mode="after")
    def _has_kind(self) -> LoopWebhook:
        if not (self.alert_type or self.event):
            raise ValueError("alert_type or event is required")
        return self

    @property
    def kind(self) -> str:
        """The event type, whichever generation named it."""
        return str(self.alert_type or self.event)

    @property
    def who(self) -> str | None:
        """The phone number or email the event concerns."""
        return self.recipient or self.contact


class WebhookAck(Model):
    """The webhook's answer; on the legacy API an inbound text gets `typing` and `read`."""

    status: Literal["accepted", "duplicate", "ignored", "updated"]
    typing: int | None = None
    read: bool | None = None


class ReplyTask(Model):
    """The `agent-replies` task body: answer a conversation as of one generation."""

    contact: str = Field(min_length=1, max_length=320)
    generation: int = Field(ge=1)


class AgentTask(Model):
    """An `agent-replies` task: a reply (`contact`, `generation`) or a referrer notification."""

    contact: str | None = Field(default=None, min_length=1, max_length=320)
    generation: int | None = Field(default=None, ge=1)
    notificationId: str | None = Field(default=None, pattern=f"^{DOC_ID_PATTERN}$")  # noqa: N815

    @model_validator(mode="after")
    def _one_job(self) -> AgentTask:
        is_reply = self.contact is not None and self.generation is not None
        if is_reply == (self.notificationId is not None):
            raise ValueError("a task is a reply (contact, generation) or a notification")
        return self


class ProfileUpdates(Model):
    """The profile facts the model may record (everything else it says is ignored)."""

    model_config = ConfigDict(extra="ignore")

    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    bio: str | None = Field(default=None, max_length=2000)
    age: int | None = Field(default=None, ge=13, le=120)
    location: str | None = Field(default=None, max_length=200)


class ModelAnswer(Model):
    """The model's structured answer."""

    model_config = ConfigDict(extra="ignore")

    reply: str = Field(min_length=1, max_length=MAX_REPLY_CHARS)
    profile_updates: ProfileUpdates = Field(default_factory=ProfileUpdates)


def conversation_ref(contact: str) -> DocumentReference:
    """Return the reference of a contact's conversation."""
    return clients.firestore().collection(CONVERSATIONS).document(contact)


def _safe_id(value: str) -> str:
    """A document id for an outside identifier (hashed when it is not one already)."""
    if re.fullmatch(DOC_ID_PATTERN, value):
        return value
    return hashlib.sha256(value.encode()).hexdigest()


def _contact(delivery: LoopWebhook) -> str:
    contact = (delivery.who or "").strip()
    if not contact or "/" in contact or contact.startswith("__"):
        raise InvalidInput(
            "recipient or contact must be a phone number or email", loc=("body", "recipient")
        )
    return contact.lower() if "@" in contact else contact


def receive(delivery: LoopWebhook, bump: bool) -> WebhookAck:
    """Record one webhook delivery and queue what it asks for (see the module docstring).

    Args:
        delivery: The parsed payload.
        bump: Re-process the conversation's unanswered messages even when the
            delivery was seen before.

    Returns:
        The acknowledgement.

    Raises:
        InvalidInput: No usable contact on an event that needs one.
        Unavailable: The reply could not be queued (LoopMessage retries).
    """
    if delivery.group is not None:
        logger.info("group message ignored", extra={"kind": delivery.kind})
        return WebhookAck(status="ignored")
    if delivery.kind in INBOUND:
        return _inbound(delivery, bump)
    if delivery.kind in _DELIVERY or delivery.kind == "message_reaction":
        return _status(delivery)
    logger.info("webhook event ignored", extra={"kind": delivery.kind})
    return WebhookAck(status="ignored")


def _inbound(delivery: LoopWebhook, bump: bool) -> WebhookAck:
    contact = _contact(delivery)
    db = clients.firestore()
    conversation = conversation_ref(contact)
    event_ref = db.collection(WEBHOOK_EVENTS).document(_safe_id(delivery.webhook_id))
    message_id = delivery.message_id or delivery.webhook_id
    message_ref = conversation.collection(MESSAGES).document("in-" + _safe_id(message_id))

    def record(current: dict[str, Any] | None) -> Plan[tuple[int, bool]]:
        now = datetime.now(UTC)
        seen = event_ref.get().to_dict()
        generation = int((current or {}).get("generation", 0))
        if seen is not None and not bump:
            return Plan((generation, bool(seen.get("enqueued"))))
        generation += 1
        update: dict[str, Any] = {
            "contact": contact,
            "generation": generation,
            "lastInboundId": message_id,
            "lastInboundAt": now,
            "lastChannel": delivery.channel or delivery.delivery_type,
            "updatedAt": now,
        }
        if current is None:
            update.update(createdAt=now, answeredGeneration=0, userId=None)
        plan: Plan[tuple[int, bool]] = Plan((generation, False), update=update)
        if seen is None:
            plan.creates.append(
                (
                    event_ref,
                    {
                        "webhookId": delivery.webhook_id,
                        "contact": contact,
                        "kind": delivery.kind,
                        "generation": generation,
                        "enqueued": False,
                        "receivedAt": now,
                        "expireAt": now + WEBHOOK_EVENT_RETENTION,
                    },
                )
            )
            plan.also_set.append((message_ref, _inbound_record(delivery, message_id, now)))
        return plan

    generation, enqueued = write_if_unchanged(conversation, record)
    if enqueued or generation == 0:
        return _ack("duplicate")
    delay = timedelta(seconds=get_settings().imessage_debounce_seconds)
    tasks.enqueue(
        QUEUE,
        ReplyTask(contact=contact, generation=generation),
        dedup_name=f"reply-{_safe_id(contact)}-{generation}",
        delay=delay,
    )
    event_ref.set({"enqueued": True}, merge=True)
    return _ack("accepted")


def _ack(status: Literal["accepted", "duplicate"]) -> WebhookAck:
    settings = get_settings()
    if settings.loopmessage_api == "legacy" and settings.imessage_typing_seconds:
        return WebhookAck(status=status, typing=settings.imessage_typing_seconds, read=True)
    return WebhookAck(status=status)


def _inbound_record(delivery: LoopWebhook, message_id: str, now: datetime) -> dict[str, Any]:
    return {
        "direction": "inbound",
        "messageId": message_id,
        "webhookId": delivery.webhook_id,
        "text": delivery.text or "",
        "speech": delivery.speech.text if delivery.speech else None,
        "attachments": list(delivery.attachments[:MAX_ATTACHMENTS]),
        "messageType": delivery.message_type,
        "channel": delivery.channel or delivery.delivery_type,
        "threadId": delivery.thread_id,
        "answered": False,
        "createdAt": now,
    }


def _status(delivery: LoopWebhook) -> WebhookAck:
    contact = _contact(delivery)
    passthrough = delivery.passthrough or ""
    if passthrough.startswith(NOTIFICATION_PREFIX) and delivery.kind in _DELIVERY:
        notice = passthrough.removeprefix(NOTIFICATION_PREFIX)
        updated = bool(re.fullmatch(DOC_ID_PATTERN, notice)) and (
            matches.record_notification_delivery(
                notice, _delivery_status(delivery), delivery.error_code
            )
        )
        return WebhookAck(status="updated" if updated else "ignored")
    messages = conversation_ref(contact).collection(MESSAGES)
    ref = None
    if delivery.passthrough and delivery.passthrough.startswith("out-"):
        ref = messages.document(_safe_id(delivery.passthrough))
    elif delivery.message_id:
        from google.cloud.firestore import FieldFilter

        match = FieldFilter("loopMessageId", "==", delivery.message_id)
        found = list(messages.where(filter=match).limit(1).stream())
        ref = found[0].reference if found else None
    if ref is None or not ref.get().exists:
        logger.info("status for an unknown message ignored", extra={"kind": delivery.kind})
        return WebhookAck(status="ignored")
    now = datetime.now(UTC)
    if delivery.kind == "message_reaction":
        ref.set({"reaction": delivery.reaction, "reactionAt": now}, merge=True)
        return WebhookAck(status="updated")
    status = _delivery_status(delivery)
    ref.set(
        {"delivery": {"status": status, "errorCode": delivery.error_code, "at": now}}, merge=True
    )
    return WebhookAck(status="updated")


def _delivery_status(delivery: LoopWebhook) -> str:
    status = _DELIVERY[delivery.kind]
    return "not_delivered" if status == "sent" and delivery.success is False else status


def run(task: AgentTask) -> None:
    """Run one `agent-replies` task (the worker).

    Raises:
        NotFound: No such conversation (the task is dropped).
        Unavailable: The model or LoopMessage failed transiently (retried).
    """
    if task.notificationId is not None:
        notify_referrer(task.notificationId)
    elif task.contact is not None and task.generation is not None:
        reply(ReplyTask(contact=task.contact, generation=task.generation))


_NOTICES = {
    "accepted": "Good news: the introduction you made was accepted. Thank you for connecting them!",
    "declined": "An update on the introduction you made: it did not work out this time."
    " Thank you for thinking of them!",
}
_NOTICE = "An update on the introduction you made: it has been closed. Thank you!"


def notify_referrer(notification_id: str) -> None:
    """Send a close-loop notification to the referrer, at most once.

    Raises:
        Unavailable: LoopMessage failed transiently; the notification is left `retry`.
    """
    from shared.platform.loopmessage import MaybeSent, Refused

    notice = matches.claim_notification(notification_id)
    if notice is None:
        return
    text = _NOTICES.get(str(notice.get("outcome")), _NOTICE)
    try:
        sent = clients.loopmessage().send(
            str(notice["to"]), text, passthrough=NOTIFICATION_PREFIX + notification_id
        )
    except Unavailable:
        matches.finish_notification(notification_id, "retry")
        raise
    except MaybeSent as exc:
        logger.warning("notification may have been sent: %s", exc.detail)
        matches.finish_notification(notification_id, "unconfirmed")
        return
    except Refused as exc:
        matches.finish_notification(notification_id, "failed", error_code=exc.code)
        return
    except RuntimeError:
        logger.error("LoopMessage is not configured; notification left pending")
        matches.finish_notification(notification_id, "pending")
        return
    matches.finish_notification(notification_id, "sent", message_id=sent.message_id)


def reply(task: ReplyTask) -> None:
    """Answer a conversation's unanswered messages as of `task.generation` (the worker).

    Raises:
        NotFound: No such conversation (the task is dropped).
        Unavailable: The model or LoopMessage failed transiently (retried).
    """
    conversation = conversation_ref(task.contact)
    outbound = conversation.collection(MESSAGES).document(f"out-{task.generation}")
    if outbound.get().exists:
        deliver(task.contact, outbound)
        return
    current = conversation.get().to_dict()
    if current is None:
        raise NotFound("Conversation not found")
    if _superseded(current, task.generation):
        return
    user_id = current.get("userId") or users.register_contact(task.contact, CHANNEL)
    if current.get("userId") != user_id:
        conversation.set({"userId": user_id}, merge=True)
    _show_typing(current.get("lastInboundId"))
    pending = _unanswered(conversation)
    if not pending:
        return
    for snapshot in pending:
        _describe_attachments(user_id, snapshot)
    request = _request(user_id, conversation)
    result = gateway.complete(request)
    said = "\n".join(_content(snapshot.to_dict()) for snapshot in pending)
    small = request.provider == LOCAL_LLM_PROVIDER
    answer = parse_answer(result.content, small_model=small, said=said)
    if answer is None:
        logger.warning("model answer unusable; messages stay unanswered")
        return
    if not _claim(task, conversation, outbound, pending=pending, answer=answer, result=result):
        return
    _apply_profile(user_id, answer.profile_updates)
    deliver(task.contact, outbound)


def parse_answer(content: str, *, small_model: bool, said: str = "") -> ModelAnswer | None:
    """Read the model's answer leniently (`shared.llm.structured`).

    A usable `reply` is kept with whichever profile updates are valid (the
    others are dropped); the small local model invents facts, so its updates
    are kept only when the texter's own words (`said`) contain them.
    Without a usable `reply`, a cloud model's answer is unusable (None: the
    messages stay unanswered, a bump retries them); the small local model is
    taken at its word when it answered in plain prose, else answered with
    `FALLBACK_REPLY`, so a local walkthrough always gets a reply.

    Args:
        content: The model's answer text.
        small_model: It came from the local model (provider `local`).
        said: What the texter wrote in the messages answered.

    Returns:
        The answer to send, or None.
    """
    parsed = structured.json_object(content)
    reply = parsed.get("reply") if parsed is not None else None
    if isinstance(reply, str) and reply.strip():
        updates = _valid_updates(parsed.get("profile_updates") if parsed else None)
        if small_model:
            stated = {
                name: value
                for name, value in updates.model_dump(exclude_none=True).items()
                if str(value).lower() in said.lower()
            }
            updates = ProfileUpdates.model_validate(stated)
        return ModelAnswer(reply=reply.strip()[:MAX_REPLY_CHARS], profile_updates=updates)
    if not small_model:
        return None
    prose = content.strip() if parsed is None and "{" not in content else ""
    return ModelAnswer(reply=prose[:MAX_REPLY_CHARS] or FALLBACK_REPLY)


def _valid_updates(sent: Any) -> ProfileUpdates:
    """The profile updates whose values are valid, each field checked on its own."""
    if not isinstance(sent, dict):
        return ProfileUpdates()
    kept: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        if sent.get(name) in (None, ""):
            continue
        try:
            ProfileUpdates.model_validate({name: sent[name]})
        except ValidationError:
            continue
        kept[name] = sent[name]
    return ProfileUpdates.model_validate(kept)


def _superseded(conversation: dict[str, Any], generation: int) -> bool:
    return (
        int(conversation.get("generation", 0)) != generation
        or int(conversation.get("answeredGeneration", 0)) >= generation
    )


def _show_typing(message_id: str | None) -> None:
    seconds = get_settings().imessage_typing_seconds
    if not message_id or not seconds or get_settings().loopmessage_api == "legacy":
        return
    try:
        clients.loopmessage().show_typing(message_id, seconds)
    except RuntimeError:
        logger.warning("LoopMessage is not configured")


def _unanswered(conversation: DocumentReference) -> list[Any]:
    from google.cloud.firestore import FieldFilter

    query = (
        conversation.collection(MESSAGES)
        .where(filter=FieldFilter("direction", "==", "inbound"))
        .where(filter=FieldFilter("answered", "==", False))
        .limit(MAX_UNANSWERED)
    )
    return sorted(query.stream(), key=lambda snapshot: snapshot.to_dict()["createdAt"])


def _describe_attachments(user_id: str, snapshot: Any) -> None:
    """Fetch, clean and store a message's images once; note what each was for the model."""
    record = snapshot.to_dict()
    if not record.get("attachments") or record.get("attachmentNotes") is not None:
        return
    notes = [_attachment_note(user_id, url) for url in record["attachments"]]
    snapshot.reference.set({"attachmentNotes": notes}, merge=True)


def _attachment_note(user_id: str, url: str) -> str:
    settings = get_settings()
    host = (urlsplit(url).hostname or "").lower()
    if not any(fnmatch.fnmatch(host, pattern) for pattern in settings.loopmessage_attachment_hosts):
        logger.warning("attachment from an unexpected host ignored")
        return "[an attachment that could not be opened]"
    try:
        fetched = fetch.fetch(
            url, policy=fetch.Policy.from_settings(max_bytes=settings.max_upload_bytes)
        )
    except DomainError as exc:
        logger.warning("attachment not fetched: %s", exc.detail)
        return "[an attachment that could not be opened]"
    if photos.sniff(fetched.content) is None:
        return "[a file that is not a photo]"
    try:
        ref, _generation = photos.store_upload(SYSTEM, user_id, None, fetched.content)
    except DomainError as exc:
        logger.warning("attachment not stored: %s", exc.detail)
        return "[a photo that could not be read]"
    if user_store.load(user_id).get("profilePic"):
        return "[a photo, saved to their photos]"
    pictures.update_profile_picture(SYSTEM, user_id, ref.proxy_url)
    return "[a photo, now their profile picture]"


def _content(record: dict[str, Any]) -> str:
    parts = [record.get("text") or ""]
    if record.get("speech"):
        parts.append(f"[voice message: {record['speech']}]")
    parts.extend(record.get("attachmentNotes") or [])
    return "\n".join(part for part in parts if part) or "[an empty message]"


def _request(user_id: str, conversation: DocumentReference) -> gateway.LlmRequest:
    from google.cloud import firestore

    settings = get_settings()
    provider, model = settings.imessage_llm()
    small = provider == LOCAL_LLM_PROVIDER
    history = settings.imessage_history_messages
    recent = (
        conversation.collection(MESSAGES)
        .order_by("createdAt", direction=firestore.Query.DESCENDING)
        .limit(min(history, SMALL_MODEL_HISTORY) if small else history)
        .stream()
    )
    turns: list[gateway.Message] = []
    for snapshot in reversed(list(recent)):
        record = snapshot.to_dict()
        inbound = record.get("direction") == "inbound"
        text = _content(record) if inbound else str(record.get("text") or "")
        role: Literal["user", "assistant"] = "user" if inbound else "assistant"
        if turns and turns[-1].role == role:
            turns[-1] = gateway.Message(role=role, content=f"{turns[-1].content}\n{text}")
        else:
            turns.append(gateway.Message(role=role, content=text))
    profile = _profile_view(user_store.load(user_id))
    system = [
        gateway.Message(role="system", content=SYSTEM_PROMPT),
        gateway.Message(role="system", content="Their profile: " + json.dumps(profile)),
    ]
    return gateway.LlmRequest(
        provider=provider,
        model=model,
        messages=system + turns,
        parameters={"max_tokens": SMALL_MODEL_MAX_TOKENS if small else 1024},
        responseSchema=RESPONSE_SCHEMA,
    )


def _profile_view(record: dict[str, Any]) -> dict[str, Any]:
    name = record.get("name") or {}
    return {
        "first_name": name.get("first") or None,
        "last_name": name.get("last") if name.get("last") not in (None, "User") else None,
        "bio": record.get("bio"),
        "age": record.get("age"),
        "location": record.get("location"),
        "has_profile_picture": bool(record.get("profilePic")),
    }


def _claim(
    task: ReplyTask,
    conversation: DocumentReference,
    outbound: DocumentReference,
    *,
    pending: Iterable[Any],
    answer: ModelAnswer,
    result: gateway.LlmResult,
) -> bool:
    """Mark the generation answered and create its reply, unless something newer arrived."""
    answered = list(pending)

    def decide(current: dict[str, Any] | None) -> Plan[bool]:
        if current is None or _superseded(current, task.generation):
            return Plan(False)
        now = datetime.now(UTC)
        record = {
            "direction": "outbound",
            "text": answer.reply,
            "generation": task.generation,
            "status": "pending",
            # SMS has no threaded replies (LoopMessage refuses reply_to_id there).
            "replyTo": None
            if current.get("lastChannel") == "sms"
            else current.get("lastInboundId"),
            "answers": [snapshot.id for snapshot in answered],
            "llm": {
                "model": result.model,
                "usage": result.usage.model_dump(),
                "cost": result.cost,
                "payer": "platform",
            },
            "createdAt": now,
        }
        marks = [(s.reference, {"answered": True, "answeredBy": outbound.id}) for s in answered]
        return Plan(
            True,
            update={"answeredGeneration": task.generation, "updatedAt": now},
            creates=[(outbound, record)],
            also_set=marks,
        )

    return write_if_unchanged(conversation, decide)


def _apply_profile(user_id: str, updates: ProfileUpdates) -> None:
    sent = updates.model_dump(exclude_none=True)
    if not sent:
        return
    changes: dict[str, Any] = {k: sent[k] for k in ("bio", "age", "location") if k in sent}
    if "first_name" in sent or "last_name" in sent:
        name = user_store.load(user_id).get("name") or {}
        changes["name"] = {
            "first": sent.get("first_name", name.get("first", "")),
            "last": sent.get("last_name", name.get("last", "User")),
        }
    try:
        users.update_user(SYSTEM, user_id, users.UpdateUserRequest.model_validate(changes))
    except (ValidationError, DomainError) as exc:
        logger.warning("profile updates not applied: %s", type(exc).__name__)


def deliver(contact: str, ref: DocumentReference) -> None:
    """Send a stored outbound message at most once (see the module docstring).

    Raises:
        Unavailable: LoopMessage failed transiently; the message is left `retry`.
    """
    from shared.platform.loopmessage import MaybeSent, Refused

    def start(current: dict[str, Any] | None) -> Plan[dict[str, Any] | None]:
        if current is None or current.get("status") not in ("pending", "retry"):
            return Plan(None)
        return Plan(current, update={"status": "sending", "attemptAt": datetime.now(UTC)})

    record = write_if_unchanged(ref, start)
    if record is None:
        return
    try:
        sent = clients.loopmessage().send(
            contact, record["text"], passthrough=ref.id, reply_to_id=record.get("replyTo")
        )
    except Unavailable:
        ref.set({"status": "retry"}, merge=True)
        raise
    except MaybeSent as exc:
        logger.warning("reply may have been sent: %s", exc.detail)
        ref.set({"status": "unconfirmed"}, merge=True)
        return
    except Refused as exc:
        ref.set({"status": "failed", "errorCode": exc.code}, merge=True)
        return
    except RuntimeError:
        logger.error("LoopMessage is not configured; reply not sent")
        ref.set({"status": "failed", "errorCode": None}, merge=True)
        return
    ref.set(
        {"status": "sent", "loopMessageId": sent.message_id, "sentAt": datetime.now(UTC)},
        merge=True,
    )


def _conversations_of(user_id: str, contacts: Iterable[str]) -> Iterator[DocumentReference]:
    """A user's conversations: those of their phone or email, then those recorded as theirs.

    The recorded ones are read `MAX_PAGE` at a time, each batch after the
    previous one was handled.
    """
    named = {
        contact: conversation_ref(contact) for contact in contacts if contact and "/" not in contact
    }
    yield from named.values()
    for batch in batches(erasure.belonging_to(CONVERSATIONS, user_id)):
        yield from (snapshot.reference for snapshot in batch if snapshot.id not in named)


def delete_user_data(user_id: str, contacts: list[str]) -> None:
    """Delete a user's conversations, their messages and webhook records (re-runnable).

    Args:
        user_id: The user.
        contacts: Their phone number and email (conversations are keyed by contact).
    """
    for ref in _conversations_of(user_id, contacts):
        erasure.delete_matching(ref.collection(MESSAGES))
        ref.delete()
    for contact in contacts:
        if contact:
            events = erasure.belonging_to(WEBHOOK_EVENTS, contact, field="contact")
            erasure.delete_matching(events)


def export_user_data(user_id: str, contacts: list[str], limit: int) -> list[dict[str, Any]]:
    """Return a user's conversations, each with its latest `limit` messages."""
    from google.cloud import firestore

    exported = []
    for ref in itertools.islice(_conversations_of(user_id, contacts), limit):
        record = ref.get().to_dict()
        if record is None:
            continue
        latest = ref.collection(MESSAGES).order_by(
            "createdAt", direction=firestore.Query.DESCENDING
        )
        messages = [s.to_dict() or {} for s in latest.limit(limit).stream()]
        exported.append({**record, "messages": messages[::-1]})
    return exported
