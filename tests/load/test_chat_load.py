"""Load: 500 chat tickets from four users, run by concurrent and repeated worker deliveries.

The Cloud Tasks emulator dispatches one task of a queue at a time, which
would hide every race between workers. So the `chat-tickets` queue is
paused while the tickets are posted, and its signed tasks (listed from the
emulator) are delivered to the real `chat_worker` eight at a time, as a
queue with concurrent dispatches does; one in ten is delivered twice at
once, and a refused delivery is retried like Cloud Tasks retries it. Then
the queue is resumed and the emulator delivers every task once more (late
retries of finished tickets). Every ticket must end `completed`, and each
user's spend must equal exactly the sum of their ledger entries, which
must equal what the fake model's reported usage costs.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from shared.agents.accounts import to_micros
from shared.llm import catalog
from shared.platform import clients
from shared.platform.config import get_settings
from tests.integration.helpers import SignedUp, web_sign_up

QUEUE = "chat-tickets"
USERS = 4
TICKETS = 500
CONCURRENCY = 8
MODEL = ("gemini", "gemini-2.5-flash")


def _queue_path() -> str:
    settings = get_settings()
    return clients.tasks().queue_path(settings.project_id, settings.tasks_location, QUEUE)


@pytest.fixture
def paused_queue(stack) -> Iterator[str]:
    clients.tasks().pause_queue(name=_queue_path())
    try:
        yield _queue_path()
    finally:
        clients.tasks().resume_queue(name=_queue_path())


def _listed_tasks(queue: str) -> list:
    from google.cloud import tasks_v2

    request = tasks_v2.ListTasksRequest(parent=queue, response_view=tasks_v2.Task.View.FULL)
    return list(clients.tasks().list_tasks(request=request))


def _deliver(task) -> int:
    """Deliver one task until the worker accepts it, as Cloud Tasks retries; count refusals."""
    http = task.http_request
    for refusals in range(20):
        response = requests.post(http.url, data=http.body, headers=dict(http.headers), timeout=60)
        if response.status_code < 300:
            return refusals
        assert response.status_code in (429, 503), response.text
        time.sleep(0.1)
    raise AssertionError(f"{task.name} refused 20 times")


def _post_ticket(stack, user: SignedUp, index: int) -> str:
    body = {
        "provider": MODEL[0],
        "model": MODEL[1],
        "messages": [{"role": "user", "content": f"question {index}"}],
    }
    response = requests.post(stack.url("/chat"), json=body, headers=user.headers, timeout=60)
    assert response.status_code == 200, response.text
    return str(response.json()["ticket_id"])


def test_concurrent_and_repeated_workers_charge_each_ticket_exactly_once(stack, paused_queue):
    users = [
        web_sign_up(stack, f"load-chat-{n}-{uuid.uuid4().hex}@example.com") for n in range(USERS)
    ]
    owners = [users[index % USERS] for index in range(TICKETS)]
    stack.llm.delay_seconds = 0.05  # workers overlap

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        ticket_ids = list(
            pool.map(lambda item: _post_ticket(stack, item[1], item[0]), enumerate(owners))
        )
    listed = _listed_tasks(paused_queue)
    assert len(listed) == TICKETS
    twice = {task.name for task in random.Random(500).sample(listed, TICKETS // 10)}  # noqa: S311
    # A task delivered twice is delivered twice in a row: both run at once.
    deliveries = [copy for task in listed for copy in [task] * (2 if task.name in twice else 1)]
    # A second delivery that finds its ticket held by the first worker is refused (503) and
    # retried below; how many overlap depends on the machine, the outcome must not.
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(_deliver, deliveries))
    clients.tasks().resume_queue(name=paused_queue)
    deadline = time.monotonic() + 120
    while _listed_tasks(paused_queue):
        assert time.monotonic() < deadline, "the emulator did not deliver the tasks again"
        time.sleep(0.5)
    time.sleep(1)  # the last re-delivery finishes

    db = clients.firestore()
    tickets = {s.id: s.to_dict() for s in db.collection("tickets").stream()}
    assert sorted(tickets) == sorted(ticket_ids)
    assert {t["status"] for t in tickets.values()} == {"completed"}
    assert all(t["reservedMicros"] == 0 for t in tickets.values())
    config = catalog.model(*MODEL)
    per_call = to_micros(catalog.cost(config, stack.llm.input_tokens, stack.llm.output_tokens))
    assert per_call > 0
    total = 0
    for user in users:
        account = db.collection("accounts").document(user.user_id).get().to_dict()
        usage = account["usageInfo"]
        spent = usage["monthlyAllowanceMicros"] - usage["spendRemainingMicros"]
        ledger = [s.to_dict() for s in db.collection(f"accounts/{user.user_id}/usage").stream()]
        owned = sorted(t for t, o in zip(ticket_ids, owners, strict=True) if o is user)
        assert sorted(entry["ticketId"] for entry in ledger) == owned
        assert spent == sum(entry["costMicros"] for entry in ledger)
        assert spent == len(owned) * per_call
        total += spent
    assert total == TICKETS * per_call
    assert len(stack.llm.calls("gemini")) == TICKETS
