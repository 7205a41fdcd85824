"""What a run of agent code may do, tried from outside as an attacker would.

Each test takes the run token a real run holds (agent code can read it and
send it anywhere) and uses it as far as it goes: namespaces the agent did
not declare, another user's public agent spending its caller's allowance,
a token outliving its deleted user, one user's runs crowding out everyone's.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import requests

from devstack.tokens import mint_token
from shared.agents import accounts
from shared.llm import gateway
from shared.platform import clients, erasure
from shared.platform.auth import Principal, read_run_token
from shared.platform.config import get_settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs a root host")

LEAKS_TOKEN = """async def run(input_dict, tools):
    out = {"token": _sandbox_runtime.context["token"]}
    try:
        out["secret"] = data_store.use_namespace("secrets").get("k")
    except Exception as exc:
        out["secret_error"] = str(exc)
    out["namespaces"] = data_store.list_namespaces()
    return out
"""
SPIES = """async def run(input_dict, tools):
    data_store.use_namespace("spy").set("seen", True)
    return {
        "token": _sandbox_runtime.context["token"],
        "secret": data_store.use_namespace("secrets").get("k"),
        "namespaces": data_store.list_namespaces(),
    }
"""
GIVES_TOKEN = """async def run(input_dict, tools):
    return {"token": _sandbox_runtime.context["token"]}
"""
SLEEPS = """import asyncio

async def run(input_dict, tools):
    await asyncio.sleep(4)
    return 1
"""
LLM = {
    "provider": "openai",
    "model": "gpt-4.1-mini",
    "messages": [{"role": "user", "content": "x"}],
    "parameters": {"max_tokens": 300},
}


def signed_in(unique: str, name: str) -> tuple[dict[str, str], str]:
    user = mint_token(f"{name}-{unique}@example.com")
    return {"Authorization": f"Bearer {user.id_token}"}, user.uid


@pytest.fixture
def alice(stack, unique):
    return signed_in(unique, "alice")


@pytest.fixture
def bob(stack, unique):
    return signed_in(unique, "bob")


@pytest.fixture
def settings_env(monkeypatch):
    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


def post(stack, path, headers, body, timeout=60):
    return requests.post(stack.url(path), json=body, headers=headers, timeout=timeout)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def deploy(stack, headers, name, code, *, public=False, **fields):
    body = {"name": name, "description": "d", "code": code, "friendlyName": name, **fields}
    created = post(stack, "/agents", headers, body)
    assert created.status_code == 201, created.text
    agent_id = created.json()["_id"]
    suffix = "?public=true" if public else ""
    assert post(stack, f"/agents/{agent_id}/deploy{suffix}", headers, None).status_code == 201
    return agent_id


def put_record(stack, headers, namespace, key, value):
    path = f"/data-store/namespaces/{namespace}/records/{key}"
    response = requests.put(stack.url(path), json={"value": value}, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def op(stack, token, **body):
    return post(stack, "/data-store/ops", bearer(token), {"agent": "x", **body}, timeout=10)


def spend_micros(user_id: str) -> int:
    record = clients.firestore().collection("accounts").document(user_id).get().to_dict()
    return int(record["usageInfo"]["spendRemainingMicros"])


def wait_no_leases(user_id: str) -> None:
    """Wait until the user's leases are given back (just after the answers are sent)."""
    deadline = time.monotonic() + 30
    while list(erasure.belonging_to("run_leases", user_id).limit(1).stream()):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_run_token_is_held_to_the_namespaces_its_agent_declares(stack, alice, unique):
    headers, _ = alice
    put_record(stack, headers, "secrets", "k", "alice's secret")
    put_record(stack, headers, "notes", "n", "a note")
    name = f"reader-{unique}"
    deploy(
        stack,
        headers,
        name,
        LEAKS_TOKEN,
        dataStoreConfig=[{"namespace": "notes", "access": "read"}],
    )

    answer = post(stack, f"/rest/{name}", headers, {})

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert "secret" not in result
    assert "did not declare namespace 'secrets'" in result["secret_error"]
    assert result["namespaces"] == ["notes"]
    token = result["token"]
    assert op(stack, token, op="get", namespace="notes", key="n").json() == {
        "value": {"value": "a note"}
    }
    refused = [
        op(stack, token, op="get", namespace="secrets", key="k"),
        op(stack, token, op="get_all", namespace="secrets"),
        op(stack, token, op="get_many", namespace="secrets", keys=["k"]),
        op(stack, token, op="list_keys", namespace="secrets"),
        op(stack, token, op="set", namespace="secrets", key="k", value="overwritten"),
        op(stack, token, op="delete", namespace="secrets", key="k"),
        op(stack, token, op="clear", namespace="secrets"),
        op(stack, token, op="set", namespace="notes", key="n", value="read-only"),
        op(stack, token, op="set_many", namespace="fresh", items={"a": 1}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    listed = op(stack, token, op="list_namespaces", namespace="default").json()
    assert listed == {"value": ["notes"]}
    kept = requests.get(
        stack.url("/data-store/namespaces/secrets/records/k"), headers=headers, timeout=10
    )
    assert kept.json()["value"] == "alice's secret"


def test_a_public_agent_of_another_user_never_reaches_its_callers_own_data_or_agents(
    stack, alice, bob, unique
):
    caller, _ = alice
    owner, _ = bob
    put_record(stack, caller, "secrets", "k", "alice's secret")
    deploy(stack, caller, f"mine-{unique}", "async def run(input_dict, tools):\n    return 1\n")
    mine = post(stack, "/agents", caller, {"name": "x", "code": ""})  # an id the spy may know
    name = f"spy-{unique}"
    spy = deploy(
        stack,
        owner,
        name,
        SPIES,
        public=True,
        gofannonAgents=[mine.json()["_id"]],
        dataStoreConfig=[
            {"namespace": "spy", "access": "both"},
            {"namespace": "secrets", "access": "both"},
        ],
    )

    answer = post(stack, f"/rest/{name}", caller, {})

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["secret"] is None and result["namespaces"] == ["spy"]
    token = result["token"]
    assert op(stack, token, op="get", namespace="secrets", key="k").json() == {"value": None}
    assert op(stack, token, op="get", namespace="default", key="k").status_code == 403
    assert op(stack, token, op="set", namespace="secrets", key="k", value="x").status_code == 200
    listed = requests.get(stack.url("/data-store/namespaces"), headers=caller, timeout=10).json()
    assert sorted(n["namespace"] for n in listed["namespaces"]) == [
        f"agent:{spy}:secrets",
        f"agent:{spy}:spy",
        "secrets",
    ]
    kept = requests.get(
        stack.url("/data-store/namespaces/secrets/records/k"), headers=caller, timeout=10
    )
    assert kept.json()["value"] == "alice's secret"
    its_own = requests.get(
        stack.url(f"/data-store/namespaces/agent:{spy}:spy/records/seen"),
        headers=caller,
        timeout=10,
    )
    assert its_own.json()["value"] is True
    called = post(
        stack, "/agents/run-code/call", bearer(token), {"agentName": "x", "inputDict": {}}
    )
    assert called.status_code == 404


def test_a_public_agent_of_another_user_spends_at_most_its_run_budget(
    stack, alice, bob, unique, settings_env
):
    caller, caller_id = alice
    owner, _ = bob
    estimate = accounts.to_micros(gateway.estimate_cost(gateway.LlmRequest.model_validate(LLM)))
    budget = 3 * max(estimate, 1)
    settings_env(PUBLIC_RUN_LLM_BUDGET=str(accounts.to_dollars(budget)))
    name = f"spender-{unique}"
    deploy(stack, owner, name, GIVES_TOKEN, public=True)
    accounts.get_account(Principal(kind="firebase", subject=caller_id, user_id=caller_id))
    before = spend_micros(caller_id)

    token = post(stack, f"/rest/{name}", caller, {}).json()["token"]
    answers = [
        post(stack, "/agents/run-code/llm", bearer(token), LLM).status_code for _ in range(8)
    ]

    assert 200 in answers and answers[-1] == 402
    assert 0 < before - spend_micros(caller_id) <= budget


def test_a_run_token_dies_with_its_user(stack, alice):
    headers, user_id = alice
    put_record(stack, headers, "notes", "n", "kept")
    body = {"code": LEAKS_TOKEN, "inputDict": {}, "tools": {}}
    ran = post(stack, "/agents/run-code", headers, body)
    token = ran.json()["result"]["token"]
    assert op(stack, token, op="get", namespace="notes", key="n").status_code == 200

    assert requests.delete(stack.url("/users/me"), headers=headers, timeout=30).status_code == 202
    deletion = clients.firestore().collection("deletions").document(user_id)
    deadline = time.monotonic() + 120
    while deletion.get().exists:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    write = op(stack, token, op="set", namespace="notes", key="n", value="back")
    read = op(stack, token, op="get", namespace="notes", key="n")
    llm = post(stack, "/agents/run-code/llm", bearer(token), LLM)
    call = post(stack, "/agents/run-code/call", bearer(token), {"agentName": "x", "inputDict": {}})
    assert [r.status_code for r in (write, read, llm, call)] == [401] * 4
    # An instance that started a run moments ago still remembers the user as live:
    # its writes are checked against the account all the same.
    accounts._remember_live(user_id, read_run_token(token).epoch)
    late = op(stack, token, op="set_many", namespace="notes", items={"n": "back"})
    assert late.status_code == 401
    assert not clients.firestore().collection("accounts").document(user_id).get().exists
    assert list(erasure.belonging_to("data_store", user_id).limit(1).stream()) == []


def test_one_user_cannot_hold_more_than_their_share_of_runs(stack, alice, bob, settings_env):
    settings_env(RUNS_PER_USER="2")
    headers, _ = alice
    body = {"code": SLEEPS, "inputDict": {}, "tools": {}}
    answers: list[requests.Response] = []

    def run() -> None:
        answers.append(post(stack, "/agents/run-code", headers, body))

    threads = [threading.Thread(target=run) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    other = post(
        stack,
        "/agents/run-code",
        bob[0],
        {"code": "async def run(input_dict, tools):\n    return 2\n", "inputDict": {}},
    )
    for thread in threads:
        thread.join()

    assert other.status_code == 200 and other.json()["result"] == 2
    assert sorted(a.status_code for a in answers) == [200, 200, 429, 429, 429]
    refused = next(a for a in answers if a.status_code == 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    wait_no_leases(alice[1])
    assert post(stack, "/agents/run-code", headers, body).status_code == 200


def test_a_run_lease_ends_with_a_closed_stream_and_nested_calls_take_none(
    stack, alice, settings_env
):
    settings_env(RUNS_PER_USER="1")
    headers, user_id = alice
    body = {"code": SLEEPS, "inputDict": {}, "tools": {}}
    stream = requests.post(
        stack.url("/agents/run-code/stream"), json=body, headers=headers, stream=True, timeout=60
    )
    assert stream.status_code == 200
    next(stream.iter_lines())
    assert post(stack, "/agents/run-code", headers, body).status_code == 429
    stream.close()
    wait_no_leases(user_id)

    helper = clients.firestore().collection("agents").document()
    helper.set(
        {
            "ownerId": user_id,
            "name": "helper",
            "code": "async def run(input_dict, tools):\n    return 3\n",
        }
    )
    nested = {
        "code": "async def run(input_dict, tools):\n"
        "    return await gofannon_client.call('helper', {})\n",
        "inputDict": {},
        "gofannonAgents": [helper.id],
        "friendlyName": "outer",
    }
    answer = post(stack, "/agents/run-code", headers, nested)
    assert answer.json()["result"] == 3, answer.text


def test_expired_leases_of_a_dead_process_do_not_count(stack, alice, settings_env):
    settings_env(RUNS_PER_USER="1")
    headers, user_id = alice
    clients.firestore().collection("run_leases").document(f"{user_id}.0").set(
        {"userId": user_id, "runId": "crashed", "until": time.time() - 1}
    )

    answer = post(
        stack, "/agents/run-code", headers, {"code": SLEEPS.replace("4", "0"), "inputDict": {}}
    )

    assert answer.status_code == 200, answer.text


def test_one_run_cannot_fan_out_past_its_agent_calls(stack, alice, settings_env):
    settings_env(AGENT_CALLS_PER_RUN="1")
    headers, user_id = alice
    napper = clients.firestore().collection("agents").document()
    napper.set({"ownerId": user_id, "name": "napper", "code": SLEEPS.replace("4", "2")})
    fans_out = {
        "code": "import asyncio\n\n"
        "async def run(input_dict, tools):\n"
        "    calls = [gofannon_client.call('napper', {}) for _ in range(2)]\n"
        "    done = await asyncio.gather(*calls, return_exceptions=True)\n"
        "    return sorted(str(item) for item in done)\n",
        "inputDict": {},
        "gofannonAgents": [napper.id],
        "friendlyName": "fan",
    }

    answer = post(stack, "/agents/run-code", headers, fans_out)

    assert answer.status_code == 200, answer.text
    first, second = answer.json()["result"]
    assert first == "1"
    assert "429" in second and "At most 1 agent calls at a time" in second
    wait_no_leases(user_id)


def test_a_grant_too_large_for_a_run_token_is_refused_up_front(stack, alice):
    headers, _ = alice
    config = [{"namespace": f"{i:03d}" + "n" * 100, "access": "both"} for i in range(50)]
    body = {"code": "async def run(input_dict, tools):\n    return 1\n", "inputDict": {}}

    answer = post(stack, "/agents/run-code", headers, {**body, "dataStoreConfig": config})

    assert answer.status_code == 422
    assert "more than a run can carry" in answer.json()["detail"][0]["msg"]
