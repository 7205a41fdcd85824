"""Providers, chat tickets, usage and sessions through the gateway and the Tasks emulator."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devstack.tokens import mint_token
from shared.agents import accounts
from shared.platform import clients
from shared.platform.auth import Principal
from shared.platform.errors import PaymentRequired

# The fake reports 1200 input and 300 output tokens for every call.
GEMINI_FLASH_COST = (1200 * 0.30 + 300 * 2.50) / 1_000_000
MODELS = {
    "gemini": "gemini-2.5-flash",
    "vertexai": "gemini-2.5-flash",
    "openai": "gpt-4.1-mini",
    "anthropic": "claude-haiku-4-5",
    "ollama": "llama3.2",
}


@pytest.fixture
def alice(stack, unique):
    user = mint_token(f"alice-{unique}@example.com")
    return {"Authorization": f"Bearer {user.id_token}"}, user.uid


def chat_body(provider="gemini", **extra):
    return {
        "provider": provider,
        "model": MODELS[provider],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "Tell me a joke"},
        ],
        **extra,
    }


def wait_ticket(stack, headers, ticket_id, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticket = requests.get(stack.url(f"/chat/{ticket_id}"), headers=headers, timeout=10).json()
        if ticket["status"] in ("completed", "failed"):
            return ticket
        time.sleep(0.1)
    raise AssertionError(f"ticket {ticket_id} still {ticket['status']}")


def ledger(user_id):
    return [
        doc.to_dict()
        for doc in clients.firestore()
        .collection("accounts")
        .document(user_id)
        .collection("usage")
        .stream()
    ]


def spend_remaining(stack, headers):
    return requests.get(stack.url("/users/me"), headers=headers, timeout=10).json()["usageInfo"][
        "spendRemaining"
    ]


def test_providers_lists_configured_catalog(stack, alice):
    headers, _ = alice

    listing = requests.get(stack.url("/providers"), headers=headers, timeout=10)
    models = requests.get(stack.url("/providers/anthropic/models"), headers=headers, timeout=10)
    model = requests.get(
        stack.url("/providers/openai/models/gpt-4.1-mini"), headers=headers, timeout=10
    )
    missing_provider = requests.get(stack.url("/providers/nope"), headers=headers, timeout=10)
    missing_model = requests.get(
        stack.url("/providers/openai/models/nope"), headers=headers, timeout=10
    )

    assert set(listing.json()) == set(MODELS)
    assert "claude-haiku-4-5" in models.json()
    assert model.json()["price"] == {"inputPerMillion": 0.4, "outputPerMillion": 1.6}
    assert model.json()["parameters"]["top_p"]["mutually_exclusive_with"] == ["temperature"]
    assert missing_provider.status_code == 404
    assert missing_model.status_code == 404
    assert requests.get(stack.url("/providers"), timeout=10).status_code == 401


def test_chat_ticket_completes_and_is_charged_once(stack, alice):
    headers, uid = alice
    before = spend_remaining(stack, headers)

    created = requests.post(stack.url("/chat"), json=chat_body(), headers=headers, timeout=10)

    assert created.status_code == 200
    assert created.json()["status"] == "pending"
    ticket = wait_ticket(stack, headers, created.json()["ticket_id"])
    assert ticket["status"] == "completed"
    result = ticket["result"]
    assert result["content"] == "echo: Tell me a joke"
    assert result["thoughts"] == "thinking about it"
    assert result["usage"] == {"input_tokens": 1200, "output_tokens": 300}
    assert result["cost"] == pytest.approx(GEMINI_FLASH_COST)
    assert spend_remaining(stack, headers) == pytest.approx(before - GEMINI_FLASH_COST)
    entries = ledger(uid)
    assert len(entries) == 1 and entries[0]["costMicros"] == round(GEMINI_FLASH_COST * 1e6)
    sent = stack.llm.calls("gemini")[0]
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."


def test_replayed_task_does_not_run_or_charge_again(stack, alice):
    headers, uid = alice
    created = requests.post(stack.url("/chat"), json=chat_body(), headers=headers, timeout=10)
    ticket_id = created.json()["ticket_id"]
    wait_ticket(stack, headers, ticket_id)
    from shared.agents import chat

    chat.run_ticket(ticket_id)

    assert len(stack.llm.calls("gemini")) == 1
    assert len(ledger(uid)) == 1


@pytest.mark.parametrize("provider", ["vertexai", "openai", "anthropic", "ollama"])
def test_each_provider_wire_format(stack, alice, provider):
    headers, _ = alice

    created = requests.post(
        stack.url("/chat"), json=chat_body(provider), headers=headers, timeout=10
    )
    ticket = wait_ticket(stack, headers, created.json()["ticket_id"])

    assert ticket["status"] == "completed", ticket
    assert ticket["result"]["content"] == "echo: Tell me a joke"
    assert ticket["result"]["usage"] == {"input_tokens": 1200, "output_tokens": 300}
    wire = "openai" if provider == "ollama" else provider
    assert len(stack.llm.calls(wire)) == 1


@pytest.mark.parametrize("provider", ["gemini", "openai", "anthropic"])
def test_structured_output(stack, alice, provider):
    headers, _ = alice
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}

    created = requests.post(
        stack.url("/chat"),
        json=chat_body(provider, responseSchema=schema),
        headers=headers,
        timeout=10,
    )
    ticket = wait_ticket(stack, headers, created.json()["ticket_id"])

    assert ticket["status"] == "completed", ticket
    assert ticket["result"]["content"] == '{"echo": "Tell me a joke"}'


def test_upstream_500_fails_ticket_without_charge(stack, alice):
    headers, uid = alice
    before = spend_remaining(stack, headers)
    stack.llm.fail_status = 500

    created = requests.post(stack.url("/chat"), json=chat_body(), headers=headers, timeout=10)
    ticket = wait_ticket(stack, headers, created.json()["ticket_id"])

    assert ticket["status"] == "failed"
    assert "500" in ticket["error"]
    assert spend_remaining(stack, headers) == pytest.approx(before)
    assert ledger(uid) == []


def test_another_users_ticket_is_404(stack, alice, unique):
    headers, _ = alice
    bob = mint_token(f"bob-{unique}@example.com")
    created = requests.post(stack.url("/chat"), json=chat_body(), headers=headers, timeout=10)

    ticket_id = created.json()["ticket_id"]
    wait_ticket(stack, headers, ticket_id)

    response = requests.get(
        stack.url(f"/chat/{ticket_id}"),
        headers={"Authorization": f"Bearer {bob.id_token}"},
        timeout=10,
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "Ticket not found"}


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"parameters": {"temperature": 5}}, ["body", "parameters", "temperature"]),
        ({"parameters": {"max_tokens": 0}}, ["body", "parameters", "max_tokens"]),
        ({"parameters": {"temperature": "hot"}}, ["body", "parameters", "temperature"]),
        ({"parameters": {"seed": 1}}, ["body", "parameters", "seed"]),
        ({"model": "gpt-99"}, ["body", "model"]),
        ({"builtInTools": ["time_travel"]}, ["body", "builtInTools", 0]),
        ({"messages": []}, ["body", "messages"]),
    ],
)
def test_parameter_validation(stack, alice, change, loc):
    headers, _ = alice

    response = requests.post(
        stack.url("/chat"), json={**chat_body("openai"), **change}, headers=headers, timeout=10
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
    assert [d.to_dict() for d in clients.firestore().collection("tickets").stream()] == []


def test_mutually_exclusive_parameters(stack, alice):
    headers, _ = alice

    response = requests.post(
        stack.url("/chat"),
        json=chat_body("anthropic", parameters={"temperature": 0.5, "top_p": 0.5}),
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 422
    assert "cannot be set together" in response.json()["detail"][0]["msg"]


def test_concurrent_reservations_never_overspend(stack, unique):
    user = mint_token(f"{unique}@example.com")
    principal = Principal(kind="firebase", subject=user.uid, user_id=user.uid)
    accounts.get_account(principal)
    accounts.admin_update(user.uid, accounts.AdminUsageUpdate(spendRemaining=1.0))

    def try_reserve(_):
        try:
            accounts.reserve(user.uid, 100_000, also_set=[])
        except PaymentRequired:
            return False
        return True

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(try_reserve, range(20)))

    assert outcomes.count(True) == 10
    assert accounts.get_account(principal).usageInfo.spendRemaining == 0


def test_twenty_chats_with_allowance_for_ten(stack, alice):
    headers, uid = alice
    estimate_body = chat_body()
    from shared.llm import gateway

    estimate = gateway.estimate_cost(gateway.LlmRequest.model_validate(estimate_body))
    requests.get(stack.url("/users/me"), headers=headers, timeout=10)
    accounts.admin_update(uid, accounts.AdminUsageUpdate(spendRemaining=estimate * 10.5))

    with ThreadPoolExecutor(max_workers=20) as pool:
        created = list(
            pool.map(
                lambda _: requests.post(
                    stack.url("/chat"), json=estimate_body, headers=headers, timeout=30
                ),
                range(20),
            )
        )
    tickets = [
        wait_ticket(stack, headers, c.json()["ticket_id"], timeout=60)
        for c in created
        if c.status_code == 200
    ]

    completed = [t for t in tickets if t["status"] == "completed"]
    assert len(completed) >= 10
    charged = sum(entry["costMicros"] for entry in ledger(uid))
    assert charged == len(completed) * round(GEMINI_FLASH_COST * 1e6)
    assert round(spend_remaining(stack, headers) * 1e6) == round(estimate * 10.5 * 1e6) - charged
