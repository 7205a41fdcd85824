"""Load: 50 concurrent `POST /rest/{friendly_name}` calls to one public deployed agent.

Each call comes from a caller of its own (one user may have only
`RUNS_PER_USER` runs going at once). Through the gateway, the `agents`
function and the signed call to the `sandbox` function, where each call
runs the agent's code in its own isolated subprocess: every call must be
answered 200 with its own result (no answer lost, none crossed with
another caller's).
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from devstack.tokens import mint_token

CALLS = 50
CODE = (
    "async def run(input_dict, tools):\n"
    "    text = input_dict['inputText']\n"
    "    return {'outputText': text[::-1], 'length': len(text)}\n"
)


def test_fifty_concurrent_rest_calls_are_all_answered_with_their_own_result(stack):
    owner = mint_token(f"load-rest-{uuid.uuid4().hex}@example.com")
    headers = {"Authorization": f"Bearer {owner.id_token}"}
    name = f"reverse_{uuid.uuid4().hex[:8]}"
    agent = requests.post(
        stack.url("/agents"),
        json={"name": "reverse", "code": CODE, "friendlyName": name},
        headers=headers,
        timeout=30,
    )
    assert agent.status_code == 201, agent.text
    deployed = requests.post(
        stack.url(f"/agents/{agent.json()['_id']}/deploy?public=true"),
        headers=headers,
        timeout=30,
    )
    assert deployed.status_code == 201, deployed.text
    inputs = [f"caller {index} {uuid.uuid4().hex}" for index in range(CALLS)]
    with ThreadPoolExecutor(10) as pool:
        callers = list(
            pool.map(lambda i: mint_token(f"load-caller-{uuid.uuid4().hex}@example.com"), inputs)
        )

    def call(text: str, caller: Any) -> requests.Response:
        return requests.post(
            stack.url(f"/rest/{name}"),
            json={"inputText": text},
            headers={"Authorization": f"Bearer {caller.id_token}"},
            timeout=120,
        )

    with ThreadPoolExecutor(CALLS) as pool:
        responses = list(pool.map(call, inputs, callers))

    assert [r.status_code for r in responses] == [200] * CALLS, [
        r.text for r in responses if r.status_code != 200
    ][:3]
    assert [r.json() for r in responses] == [
        {"outputText": text[::-1], "length": len(text)} for text in inputs
    ]
