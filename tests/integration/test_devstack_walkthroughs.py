"""The README's `make dev` walkthroughs, each run twice, through the gateway.

The stand-ins are the dev stack's own (`running_standins`: LoopMessage and
People Data Labs in their own processes, on free ports) with the settings
`make dev` gives the service (`devstack.standins.settings`), and the demo
user is seeded as `make dev` seeds it. No cloud model key is configured, so
the iMessage agent and archetypes fall back to provider `local`, served
here by the fake LLM's OpenAI-compatible endpoint (the real SmolLM2 is too
slow on a shared machine): it echoes the prompt, an answer no schema fits,
so the small model's fallbacks are what these walkthroughs exercise.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from devstack import standins
from devstack.emulators import STANDINS, free_port, running_standins, wipe_standins
from devstack.seed import seed_demo_user
from devstack.standins.people import CONTACTS
from devstack.tokens import mint_token
from shared.platform import clients

DEMO_EMAIL = "demo@example.com"
TEXTER = "+12015550142"
DEBOUNCE = 1.5


@pytest.fixture(scope="module")
def standin_urls(live_stack) -> Iterator[dict[str, str]]:
    with running_standins({name: free_port() for name in STANDINS}) as urls:
        yield urls


@pytest.fixture
def dev(stack, standin_urls, monkeypatch) -> Iterator[dict[str, str]]:
    """The service configured as `make dev` configures it, with no cloud model key."""
    for name in ("LOOPMESSAGE_AUTH_KEY", "PDL_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in standins.settings(standin_urls).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOCAL_LLM_BASE_URL", stack.env["OPENAI_BASE_URL"])
    monkeypatch.setenv("IMESSAGE_DEBOUNCE_SECONDS", str(DEBOUNCE))
    clients.reset()
    wipe_standins({name: int(url.rsplit(":", 1)[1]) for name, url in standin_urls.items()})
    try:
        yield standin_urls
    finally:
        monkeypatch.undo()
        clients.reset()


def text(stack, words: str) -> requests.Response:
    """Walkthrough 1's `curl`: a LoopMessage inbound text with the local webhook secret."""
    return requests.post(
        stack.url("/agent/webhook"),
        json={
            "alert_type": "message_inbound",
            "recipient": TEXTER,
            "text": words,
            "message_type": "text",
            "delivery_type": "imessage",
            "message_id": str(uuid.uuid4()),
            "webhook_id": str(uuid.uuid4()),
            "api_version": "1.0",
            "sender_name": "series.concierge",
        },
        headers={"Authorization": standins.WEBHOOK_SECRET},
        timeout=10,
    )


def sent_by_loopmessage(url: str) -> list[dict]:
    return requests.get(url + "/", timeout=10).json()["sent"]


def wait_for(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_walkthrough_1_text_the_agent_twice(stack, dev):
    for run in (1, 2):
        first = text(stack, "hi! who is this?")
        second = text(stack, "I'm Sam, I live in Denver")

        assert first.status_code == second.status_code == 200, second.text
        assert first.json()["status"] == second.json()["status"] == "accepted"
        sent = wait_for(lambda n=run: len(sent_by_loopmessage(dev["loopmessage"])) >= n)
        time.sleep(DEBOUNCE + 2)
        sent = sent_by_loopmessage(dev["loopmessage"])
        assert len(sent) == run, sent  # the double text got one reply
        assert sent[-1]["to"] == TEXTER
        assert sent[-1]["text"]
        assert sent[-1]["passthrough"] == f"out-{2 * run}"
    listing = requests.get(dev["loopmessage"] + "/", timeout=10).json()
    assert [e["path"] for e in listing["exchanges"]] == ["/api/v1/message/send/"] * 2
    assert all(e["status"] == 200 for e in listing["exchanges"])


def augmented(stack, demo_id: str, headers: dict[str, str]) -> dict:
    started = requests.post(stack.url(f"/users/{demo_id}/augment"), headers=headers, timeout=30)
    assert started.status_code == 200, started.text

    def finished() -> dict | None:
        user = requests.get(stack.url(f"/users/{demo_id}"), headers=headers, timeout=10).json()
        return user if user["metadata"]["augmentation"]["finished_at"] else None

    return wait_for(finished, timeout=120)


def export(stack, headers: dict[str, str]) -> dict:
    response = requests.get(stack.url("/users/me/export"), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_walkthroughs_2_and_3_augment_then_close_the_loop_twice(stack, dev):
    demo_id = seed_demo_user(DEMO_EMAIL)
    headers = {"Authorization": f"Bearer {mint_token(DEMO_EMAIL).id_token}"}

    for _run in (1, 2):
        user = augmented(stack, demo_id, headers)
        run = user["metadata"]["augmentation"]
        assert (run["status"], run["total"], run["done"], run["failed"]) == (
            "completed",
            len(CONTACTS) + 1,
            len(CONTACTS) + 1,
            0,
        )
        assert run["enrichment"] == "matched"
        assert user["metadata"]["linkedin_info"]["url"] == "https://linkedin.com/in/demo-user"
    data = export(stack, headers)
    names = sorted(f"{a['name']['first']} {a['name']['last']}" for a in data["archetypes"])
    assert names == sorted(person.full_name for person in CONTACTS)
    assert all("works as" in a["bio"] for a in data["archetypes"])
    assert len(data["matches"]) == len(CONTACTS)
    lookups = requests.get(dev["pdl"] + "/", timeout=10).json()["exchanges"]
    assert {e["status"] for e in lookups} == {200}

    closed: list[str] = []
    for _run in (1, 2):
        data = export(stack, headers)
        match = next(m for m in data["matches"] if m["status"] == "open")
        (archetype_id,) = [u for u in match["users"] if u != demo_id]
        before = {
            uid: requests.get(stack.url(f"/users/{uid}"), headers=headers, timeout=10).json()["elo"]
            for uid in (demo_id, archetype_id)
        }

        response = requests.post(
            stack.url("/users/close-loop"),
            params={"sourceId": demo_id, "targetId": archetype_id},
            json={"outcome": "accepted"},
            headers=headers,
            timeout=10,
        )

        assert response.status_code == 200, response.text
        change = response.json()["eloChange"]
        assert change[demo_id] > 0 > change[archetype_id]
        for uid in (demo_id, archetype_id):
            after = requests.get(stack.url(f"/users/{uid}"), headers=headers, timeout=10).json()
            assert after["elo"] == before[uid] + change[uid]
        closed.append(archetype_id)
    assert len(set(closed)) == 2
