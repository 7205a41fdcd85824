"""The real local model (provider `local`) through the gateway, the chat queue and the worker.

The llama.cpp server with SmolLM2-135M-Instruct starts once per session, only
when a test here runs (a real model, not a fake: the answers are checked by
shape, never by wording).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from devstack.emulators import LOCAL_LLM_MODEL, free_port, running_local_llm
from devstack.tokens import mint_token
from shared.platform import clients
from tests.integration.test_chat import wait_ticket

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
    },
    "required": ["name", "age", "hobbies"],
}


@pytest.fixture(scope="session")
def local_llm_url() -> Iterator[str]:
    with running_local_llm(free_port()) as url:
        yield url


@pytest.fixture
def local_provider(stack, local_llm_url, monkeypatch):
    """Configure provider `local` for this test only (the other tests see it unconfigured)."""
    monkeypatch.setenv("LOCAL_LLM_BASE_URL", local_llm_url)
    clients.reset()
    yield
    monkeypatch.undo()
    clients.reset()


@pytest.fixture
def alice(local_provider, unique):
    user = mint_token(f"alice-{unique}@example.com")
    return {"Authorization": f"Bearer {user.id_token}"}


def chat(stack, headers, **extra) -> dict:
    created = requests.post(
        stack.url("/chat"),
        json={"provider": "local", "model": LOCAL_LLM_MODEL, **extra},
        headers=headers,
        timeout=10,
    )
    assert created.status_code == 200, created.text
    return wait_ticket(stack, headers, created.json()["ticket_id"], timeout=120)


def test_local_provider_is_listed_when_configured(stack, alice):
    listing = requests.get(stack.url("/providers"), headers=alice, timeout=10)

    assert listing.status_code == 200
    assert LOCAL_LLM_MODEL in listing.json()["local"]["models"]


def test_real_completion_through_the_chat_queue(stack, alice):
    ticket = chat(
        stack,
        alice,
        messages=[
            {"role": "system", "content": "You are a friendly assistant. Answer in one sentence."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        parameters={"max_tokens": 32, "temperature": 0},
    )

    assert ticket["status"] == "completed", ticket
    result = ticket["result"]
    assert result["content"].strip()
    assert result["model"] == LOCAL_LLM_MODEL
    assert 0 < result["usage"]["output_tokens"] <= 32
    assert result["usage"]["input_tokens"] > 10
    assert result["cost"] == 0


def test_real_structured_completion_follows_the_schema(stack, alice):
    ticket = chat(
        stack,
        alice,
        messages=[{"role": "user", "content": "Invent a person: their name, age and hobbies."}],
        parameters={"max_tokens": 200, "temperature": 0},
        responseSchema=PERSON,
    )

    assert ticket["status"] == "completed", ticket
    person = json.loads(ticket["result"]["content"])
    assert set(person) == {"name", "age", "hobbies"}
    assert isinstance(person["name"], str)
    assert isinstance(person["age"], int)
    assert all(isinstance(hobby, str) for hobby in person["hobbies"])


def test_the_concierge_and_archetype_prompts_work_with_the_real_model(local_provider, monkeypatch):
    """What `make dev` does with no cloud key: both features on SmolLM2, within its context."""
    from shared.llm import gateway
    from shared.platform.config import get_settings
    from shared.platform.person_data import PersonMatch
    from shared.social import augment, imessage

    monkeypatch.delenv("GEMINI_API_KEY")
    clients.reset()
    provider, model = get_settings().imessage_llm()
    assert (provider, model) == ("local", LOCAL_LLM_MODEL)
    result = gateway.complete(
        gateway.LlmRequest(
            provider=provider,
            model=model,
            messages=[
                gateway.Message(role="system", content=imessage.SYSTEM_PROMPT),
                gateway.Message(role="system", content='Their profile: {"first_name": null}'),
                gateway.Message(role="user", content="hi! I'm Sam from Denver. who is this?"),
            ],
            parameters={"max_tokens": imessage.SMALL_MODEL_MAX_TOKENS},
            responseSchema=imessage.RESPONSE_SCHEMA,
        )
    )
    answer = imessage.parse_answer(result.content, small_model=True)
    assert answer is not None
    assert answer.reply.strip()

    contact = augment.Contact(name="Maya Okafor", email="maya@example.com", timeSpent=120)
    profile = {"job_title": "staff engineer", "job_company_name": "lumenfold", "x": "y" * 5000}
    draft, cost = augment._draft(contact, PersonMatch(url=None, content=profile, likelihood=8))
    assert draft.name.first
    assert draft.bio
    assert 0 <= draft.probability <= 1
    assert cost == 0
