"""Load: 2,000 LoopMessage deliveries over 100 conversations, a fifth of them duplicates.

Everything is real but LoopMessage and the model (fakes on 127.0.0.1): the
webhook behind the gateway, Firestore, the Cloud Tasks emulator and the
`agent_worker`. Each conversation gets its texts as one burst (its
deliveries posted four at a time, some duplicates racing their original,
others re-delivered after the burst); up to eight conversations burst at
once. Afterwards every distinct text is stored once and answered by exactly
one sent reply, duplicates bumped nothing, and a burst that arrived within
the debounce window was answered by exactly one reply.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests

from shared.platform import clients
from shared.platform.config import get_settings
from tests.fakes.loopmessage import FakeLoopMessage
from tests.fakes.server import serving
from tests.integration.helpers import random_number
from tests.integration.test_imessage import legacy, reconfigure

SECRET = "load-webhook-secret"
REPLY = {"reply": "Got all of that, thanks!", "profile_updates": {}}
CONVERSATIONS = 100
TEXTS = 16  # distinct texts per conversation
RACING_DUPLICATES = 2  # re-delivered while the original is in flight
LATE_DUPLICATES = 2  # re-delivered after the burst (LoopMessage's retry)
DEBOUNCE = 8.0
DRAIN_TIMEOUT = 150.0


@pytest.fixture
def loop(stack) -> Iterator[FakeLoopMessage]:
    fake = FakeLoopMessage()
    with serving(fake.app()) as url:
        values = {
            **fake.settings(url),
            "LOOPMESSAGE_WEBHOOK_SECRET": SECRET,
            "IMESSAGE_DEBOUNCE_SECONDS": str(DEBOUNCE),
        }
        reconfigure(values)
        stack.llm.reply = json.dumps(REPLY)
        try:
            yield fake
        finally:
            for name in values:
                os.environ.pop(name, None)
            reconfigure({})


@dataclass
class Burst:
    """One conversation's deliveries and when they were posted."""

    number: str
    texts: list[dict[str, str]]
    statuses: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    def deliveries(self, rng: random.Random) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The burst (texts and racing duplicates, shuffled) and the late re-deliveries."""
        duplicates = rng.sample(self.texts, RACING_DUPLICATES + LATE_DUPLICATES)
        burst = self.texts + duplicates[:RACING_DUPLICATES]
        rng.shuffle(burst)
        return burst, duplicates[RACING_DUPLICATES:]


def _burst(number: str) -> Burst:
    texts = [legacy(number, f"text {index} to the concierge") for index in range(TEXTS)]
    return Burst(number=number, texts=texts)


def _deliver(url: str, burst: Burst, rng: random.Random) -> None:
    session = requests.Session()
    session.headers["Authorization"] = SECRET
    in_burst, late = burst.deliveries(rng)

    def post(payload: dict[str, str]) -> str:
        response = session.post(url, json=payload, timeout=60)
        assert response.status_code == 200, response.text
        return str(response.json()["status"])

    burst.started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        burst.statuses.extend(pool.map(post, in_burst))
    burst.statuses.extend(post(payload) for payload in late)
    burst.finished = time.monotonic()


def _queue_empty(queue: str) -> bool:
    from google.cloud import tasks_v2

    settings = get_settings()
    parent = clients.tasks().queue_path(settings.project_id, settings.tasks_location, queue)
    return not list(clients.tasks().list_tasks(request=tasks_v2.ListTasksRequest(parent=parent)))


def _all_answered(db, refs) -> bool:
    """Whether every conversation answered its last generation and sent that reply."""
    for snapshot in db.get_all(refs):
        record = snapshot.to_dict() or {}
        generation = record.get("generation")
        if generation != TEXTS or record.get("answeredGeneration") != generation:
            return False
        reply = snapshot.reference.collection("messages").document(f"out-{generation}").get()
        if (reply.to_dict() or {}).get("status") != "sent":
            return False
    return True


def test_duplicated_deliveries_are_stored_once_and_each_burst_answered_once(stack, loop):
    rng = random.Random(17)  # noqa: S311 - which deliveries repeat, not a secret
    # Valid numbers only: a random exchange starting with 0 or 1 made every reply task drop.
    bursts = [_burst(random_number()) for _ in range(CONVERSATIONS)]
    url = stack.url("/agent/webhook")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda b: _deliver(url, b, random.Random(rng.random())), bursts))  # noqa: S311

    statuses = [status for burst in bursts for status in burst.statuses]
    assert len(statuses) == CONVERSATIONS * (TEXTS + RACING_DUPLICATES + LATE_DUPLICATES) == 2000
    assert set(statuses) <= {"accepted", "duplicate"}
    assert statuses.count("duplicate") >= CONVERSATIONS * LATE_DUPLICATES
    db = clients.firestore()
    refs = [db.collection("conversations").document(burst.number) for burst in bursts]
    deadline = time.monotonic() + DEBOUNCE + DRAIN_TIMEOUT
    while not (_queue_empty("agent-replies") and _all_answered(db, refs)):
        assert time.monotonic() < deadline, "reply tasks still queued, or bursts unanswered"
        time.sleep(0.5)
    time.sleep(1)  # a task still in flight may only find its generation answered

    within_window = 0
    for burst in bursts:
        conversation = db.collection("conversations").document(burst.number)
        record = conversation.get().to_dict()
        assert record is not None, burst.number
        # Duplicates bumped nothing: one generation per distinct text.
        assert record["generation"] == TEXTS, burst.number
        assert record["answeredGeneration"] == TEXTS, burst.number
        stored = conversation.collection("messages").stream()
        messages = [snapshot.to_dict() | {"id": snapshot.id} for snapshot in stored]
        inbound = [m for m in messages if m["direction"] == "inbound"]
        outbound = [m for m in messages if m["direction"] == "outbound"]
        # Nothing lost, nothing stored twice.
        assert sorted(m["messageId"] for m in inbound) == sorted(
            t["message_id"] for t in burst.texts
        ), burst.number
        assert all(m["answered"] for m in inbound), burst.number
        # Each text answered by exactly one reply, and each reply sent exactly once.
        answered = [message_id for m in outbound for message_id in m["answers"]]
        assert sorted(answered) == sorted(m["id"] for m in inbound), burst.number
        assert all(m["status"] == "sent" for m in outbound), burst.number
        sent = loop.sent_to(burst.number)
        assert sorted(m["passthrough"] for m in sent) == sorted(m["id"] for m in outbound)
        # A burst that ended within the debounce window of its first text gets one reply.
        if burst.finished - burst.started < DEBOUNCE:
            within_window += 1
            assert len(sent) == 1, (burst.number, burst.finished - burst.started, len(sent))
    # How many bursts end within the window depends on the machine; the check above must run.
    assert within_window, "no burst ended within the debounce window"
    events = db.collection("webhook_events").count().get()[0][0].value
    assert events == CONVERSATIONS * TEXTS
