"""Retry policies of the model gateway against the fake providers (requests counted).

A call refused with 429 or a 5xx is repeated with backoff up to
`LLM_MAX_ATTEMPTS` times; a 4xx and a timeout are not. (LoopMessage's
policy is tested in test_imessage.py, People Data Labs' in
test_person_data.py.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from shared.llm import gateway
from shared.platform import clients
from shared.platform.config import get_settings

MODELS = {"gemini": "gemini-2.5-flash", "openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5"}


def ask(provider: str) -> gateway.LlmResult:
    return gateway.complete(
        gateway.LlmRequest(
            provider=provider,
            model=MODELS[provider],
            messages=[{"role": "user", "content": "Hello"}],
            parameters={"max_tokens": 100},
        )
    )


@pytest.fixture
def short_timeout(stack) -> Iterator[None]:
    def configure() -> None:
        get_settings.cache_clear()
        for factory in (clients.genai, clients.openai, clients.anthropic):
            factory.cache_clear()

    os.environ["LLM_TIMEOUT_SECONDS"] = "1"
    configure()
    try:
        yield
    finally:
        del os.environ["LLM_TIMEOUT_SECONDS"]
        configure()


@pytest.mark.parametrize("provider", list(MODELS))
@pytest.mark.parametrize(("status", "failures"), [(503, 2), (429, 1), (500, 1)])
def test_overload_and_server_errors_are_retried(stack, provider, status, failures):
    stack.llm.fail_status, stack.llm.fail_times = status, failures

    result = ask(provider)

    assert result.content == "echo: Hello"
    assert len(stack.llm.calls(provider)) == failures + 1


@pytest.mark.parametrize("provider", list(MODELS))
def test_retries_stop_after_the_last_attempt(stack, provider):
    stack.llm.fail_status = 503

    with pytest.raises(gateway.UpstreamError):
        ask(provider)

    assert len(stack.llm.calls(provider)) == get_settings().llm_max_attempts == 3


@pytest.mark.parametrize("provider", list(MODELS))
@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_never_retried(stack, provider, status):
    stack.llm.fail_status = status

    with pytest.raises(gateway.UpstreamError):
        ask(provider)

    assert len(stack.llm.calls(provider)) == 1


@pytest.mark.parametrize("provider", list(MODELS))
def test_a_timeout_is_not_repeated(stack, short_timeout, provider):
    stack.llm.delay_seconds = 2

    with pytest.raises(gateway.UpstreamError):
        ask(provider)

    assert len(stack.llm.calls(provider)) == 1
