"""Code generation against answers real models give (the fake LLM returning each bad shape)."""

from __future__ import annotations

import json

import pytest
import requests

from devstack.tokens import mint_token
from shared.agents.codegen import ANSWER_TOKENS
from shared.platform import clients

AGENT_MODEL = {"provider": "openai", "model": "gpt-4.1-mini", "parameters": {}}
DEMO_MODEL = {"provider": "gemini", "model": "gemini-2.5-flash", "parameters": {}}
BODY = "return {'outputText': input_dict['inputText']}"
DEMO = {"html": "<p id='out'>hi</p>", "css": "p { color: red; }", "js": "console.log(1);"}


@pytest.fixture
def user(stack, unique):
    minted = mint_token(f"codegen-{unique}@example.com")
    return {"Authorization": f"Bearer {minted.id_token}"}, minted.uid


def generate_agent(stack, headers, model=AGENT_MODEL):
    body = {"description": "Echo the input", "modelConfig": model}
    return requests.post(stack.url("/agents/generate-code"), json=body, headers=headers, timeout=60)


def generate_demo(stack, headers):
    body = {"userPrompt": "A greeting page", "selectedApis": [], "modelConfig": DEMO_MODEL}
    return requests.post(stack.url("/demos/generate-code"), json=body, headers=headers, timeout=60)


def ledger(uid):
    usage = clients.firestore().collection("accounts").document(uid).collection("usage")
    return [doc.to_dict() for doc in usage.stream()]


RAW_NEWLINES = '{"friendlyName": "echo", "docstring": "Echoes.", "body": "x = 1\nreturn {}"}'
FENCED = "```json\n" + json.dumps({"friendlyName": "e", "docstring": "d", "body": BODY}) + "\n```"
CHATTY = "Here you go!\n" + json.dumps({"friendlyName": "e", "docstring": "d", "body": BODY})
CUT = '{"friendlyName": "echo", "docstring": "Echoes the input", "body": "return {}'
# SmolLM2 in JSON mode: the dict closed twice, then an explanation after a fence, in the string.
CLOSED_TWICE = (
    '{"friendlyName": "echo", "docstring": "d", "body": "text = input_dict[\'inputText\']\n'
    "return {'outputText': text}}\n```\nThis returns the text.\n{\"}"
)


@pytest.mark.parametrize("answer", [RAW_NEWLINES, FENCED, CHATTY, CUT, CLOSED_TWICE])
def test_agent_answers_models_really_give_are_read(stack, user, answer):
    headers, uid = user
    stack.llm.replies.append(answer)

    response = generate_agent(stack, headers)

    assert response.status_code == 200, response.text
    assert "async def run(input_dict, tools):" in response.json()["code"]
    assert len(stack.llm.calls("openai")) == 1
    assert len(ledger(uid)) == 1


def test_agent_code_that_does_not_parse_is_asked_for_again_with_the_error(stack, user):
    headers, uid = user
    broken = json.dumps({"friendlyName": "e", "docstring": "d", "body": "return {'a': (1"})
    fixed = json.dumps({"friendlyName": "e", "docstring": "d", "body": BODY})
    stack.llm.replies.extend([broken, fixed])

    response = generate_agent(stack, headers)

    assert response.status_code == 200, response.text
    assert BODY in response.json()["code"]
    second = stack.llm.calls("openai")[1]["messages"][-1]["content"]
    assert "Your previous answer could not be used: the body is not valid Python" in second
    assert len(ledger(uid)) == 2


def test_two_unusable_answers_are_a_502_that_says_what_was_wrong(stack, user):
    headers, uid = user
    missing = json.dumps({"friendlyName": "e", "docstring": "d"})
    stack.llm.replies.extend([missing, missing])

    response = generate_agent(stack, headers)

    assert response.status_code == 502
    assert response.json() == {
        "detail": "The model did not answer with the agent's code as JSON: "
        "the field `body` was missing (asked 2 times)"
    }
    assert len(ledger(uid)) == 2


def test_the_request_is_sized_to_the_models_limits(stack, user):
    headers, _ = user
    stack.llm.replies.append(json.dumps({"friendlyName": "e", "docstring": "d", "body": BODY}))
    catalog = requests.get(stack.url("/providers"), headers=headers, timeout=10).json()
    most = catalog["openai"]["models"]["gpt-4.1-mini"]["parameters"]["max_tokens"]["max"]

    generate_agent(stack, headers, {**AGENT_MODEL, "parameters": {"max_tokens": 16}})

    assert stack.llm.calls("openai")[0]["max_completion_tokens"] == min(most, ANSWER_TOKENS)


@pytest.mark.parametrize(
    ("answers", "status"),
    [
        (["```json\n" + json.dumps(DEMO) + "\n```"], 200),
        (['{"html": "<p>\nhi</p>", "css": "", "js": "let a = 1;\nlet b = 2;"}'], 200),
        (['{"html": "<p>hi</p>", "css": "p {}", "js": "console.log(1)'], 200),
        ([json.dumps({"css": "", "js": ""}), json.dumps(DEMO)], 200),
        ([json.dumps({"html": " ", "css": "", "js": ""})] * 2, 502),
    ],
)
def test_demo_answers_are_read_checked_and_asked_again(stack, user, answers, status):
    headers, uid = user
    stack.llm.replies.extend(answers)

    response = generate_demo(stack, headers)

    assert response.status_code == status, response.text
    assert len(ledger(uid)) == len(answers)
    if status == 502:
        assert "the field `html` was empty" in response.json()["detail"]
    else:
        assert response.json()["html"].startswith("<p")
