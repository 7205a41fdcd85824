"""The LLM gateway: every model call of the product goes through `complete`.

It validates the request against the catalog, speaks each provider's API
through its official SDK (google-genai for Gemini and Vertex AI, openai for
OpenAI and the OpenAI-compatible servers: Ollama and the local llama.cpp
server, anthropic), keeps the whole conversation, supports
JSON-schema structured output and built-in tools, applies the time limit
(`LLM_TIMEOUT_SECONDS`) and prices the call from its token usage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ConfigDict, Field

from shared.llm import catalog
from shared.platform import clients
from shared.platform.config import get_settings
from shared.platform.errors import InvalidInput, NotFound, Unavailable
from shared.platform.models import Model
from shared.platform.values import StorableMap

_CHARS_PER_TOKEN = 4
# Providers spoken to through an OpenAI-compatible endpoint of their own.
_OPENAI_COMPATIBLE = ("ollama", "local")


# Providers a user's own API key can pay for (the gofannon UI's key slots we can speak to).
OWN_KEY_PROVIDERS = ("openai", "anthropic", "gemini")


@dataclass(frozen=True)
class OwnKey:
    """A user's own API key for one provider; its secret is never printed."""

    provider: str
    secret: str = field(repr=False)


class Message(Model):
    """One turn of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=200_000)


class LlmRequest(Model):
    """A model call: provider, model, conversation and options."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    messages: list[Message] = Field(min_length=1, max_length=500)
    parameters: StorableMap = Field(default_factory=dict)
    builtInTools: list[str] = Field(default_factory=list, max_length=10)  # noqa: N815
    responseSchema: StorableMap | None = None  # noqa: N815 - JSON Schema of the answer


class Usage(Model):
    """Tokens the call consumed."""

    input_tokens: int
    output_tokens: int


class LlmResult(Model):
    """A model's answer, priced."""

    content: str
    thoughts: str | None = None
    model: str
    usage: Usage
    cost: float


class UpstreamError(Unavailable):
    """The provider failed or did not answer in time.

    Args:
        detail: What happened, for the caller.
        retryable: Repeating the same call can help (429, 5xx, no connection made).
    """

    def __init__(self, detail: str, *, retryable: bool = False) -> None:
        super().__init__(detail)
        self.retryable = retryable


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def check_config(
    provider: str,
    model: str,
    parameters: dict[str, Any],
    tools: list[str] | None = None,
    keyed: Collection[str] = (),
) -> tuple[catalog.ModelConfig, dict[str, Any]]:
    """Validate a provider, model, parameters and built-in tools against the catalog.

    `keyed` names the providers the caller has an API key of their own for
    (usable even when the platform has no key).

    Returns:
        The model's catalog entry and the checked parameters.

    Raises:
        InvalidInput: Unknown provider or model, bad parameters or tools.
    """
    try:
        config = catalog.model(provider, model, keyed)
    except NotFound as exc:
        raise InvalidInput(exc.detail, loc=("body", "model")) from exc
    checked = catalog.validate_parameters(config, parameters)
    catalog.validate_tools(config, tools or [])
    return config, checked


def prepare(
    request: LlmRequest, keyed: Collection[str] = ()
) -> tuple[catalog.ModelConfig, dict[str, Any]]:
    """Validate a request against the catalog (`keyed`: providers of the caller's own keys).

    Returns:
        The model's catalog entry and the checked parameters.

    Raises:
        InvalidInput: Unknown provider or model, bad parameters or tools, no user message.
    """
    config, parameters = check_config(
        request.provider, request.model, request.parameters, request.builtInTools, keyed
    )
    if all(message.role == "system" for message in request.messages):
        raise InvalidInput("The conversation needs a user message", loc=("body", "messages"))
    return config, parameters


def estimate_cost(request: LlmRequest, keyed: Collection[str] = ()) -> float:
    """The most a call may cost: its input at 4 characters a token, plus `max_tokens` of output.

    Raises:
        InvalidInput: The request is not valid for the catalog.
    """
    config, parameters = prepare(request, keyed)
    input_tokens = sum(len(m.content) for m in request.messages) // _CHARS_PER_TOKEN + 1
    output_tokens = int(parameters.get("max_tokens") or 0)
    if "thinking_budget" in config.parameters:
        output_tokens += int(
            parameters.get("thinking_budget", config.parameters["thinking_budget"].default) or 0
        )
    return catalog.cost(config, input_tokens, output_tokens)


def complete(request: LlmRequest, own_key: OwnKey | None = None) -> LlmResult:
    """Call the model, with the caller's own key for its provider when given one.

    A call the provider refused with 429 or a 5xx, or that could not connect,
    is repeated (a completion changes nothing on our side) up to
    `LLM_MAX_ATTEMPTS` times with exponential backoff from
    `LLM_RETRY_BACKOFF_SECONDS`; a 4xx or a timeout is not (the same call
    would fail again, or would spend another `LLM_TIMEOUT_SECONDS`).

    Raises:
        InvalidInput: The request is not valid for the catalog.
        UpstreamError: The provider failed, refused or timed out.
    """
    secret = own_key.secret if own_key and own_key.provider == request.provider else None
    config, parameters = prepare(request, [request.provider] if secret else [])
    call = {
        "gemini": _gemini,
        "vertexai": _gemini,
        "openai": _openai,
        "ollama": _openai,
        "local": _openai,
        "anthropic": _anthropic,
    }[request.provider]
    settings = get_settings()
    attempt = 1
    while True:
        try:
            content, thoughts, input_tokens, output_tokens = call(
                request, config, parameters, secret
            )
            break
        except UpstreamError as exc:
            if not exc.retryable or attempt >= settings.llm_max_attempts:
                raise
            time.sleep(settings.llm_retry_backoff_seconds * 2 ** (attempt - 1))
            attempt += 1
    return LlmResult(
        content=content,
        thoughts=thoughts or None,
        model=request.model,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        cost=catalog.cost(config, input_tokens, output_tokens),
    )


_Answer = tuple[str, str, int, int]


def _never_connected(exc: Exception) -> bool:
    """Tell whether an SDK's connection error happened before the request was sent."""
    import httpx

    return isinstance(exc.__cause__, httpx.ConnectError)


def _system_text(request: LlmRequest) -> str | None:
    system = [m.content for m in request.messages if m.role == "system"]
    return "\n\n".join(system) or None


def _gemini(
    request: LlmRequest, config: catalog.ModelConfig, parameters: dict[str, Any], key: str | None
) -> _Answer:
    from google.genai import errors, types

    client = (
        clients.genai_with_key(key) if key else clients.genai(vertex=request.provider == "vertexai")
    )
    contents = [
        types.Content(
            role="model" if m.role == "assistant" else "user", parts=[types.Part(text=m.content)]
        )
        for m in request.messages
        if m.role != "system"
    ]
    options: dict[str, Any] = {
        "system_instruction": _system_text(request),
        "temperature": parameters.get("temperature"),
        "top_p": parameters.get("top_p"),
        "max_output_tokens": parameters.get("max_tokens"),
        "tools": [types.Tool(**config.tool_configs()[t]) for t in request.builtInTools] or None,
        "automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True),
    }
    if "thinking_budget" in parameters:
        options["thinking_config"] = types.ThinkingConfig(
            thinking_budget=parameters["thinking_budget"], include_thoughts=True
        )
    if request.responseSchema is not None:
        options["response_mime_type"] = "application/json"
        options["response_json_schema"] = request.responseSchema
    try:
        response = client.models.generate_content(
            model=request.model, contents=contents, config=types.GenerateContentConfig(**options)
        )
    except errors.APIError as exc:
        raise UpstreamError(
            f"{request.provider} answered {exc.code}", retryable=_retryable_status(exc.code)
        ) from exc
    except Exception as exc:
        import httpx

        raise UpstreamError(
            f"{request.provider} unreachable: {type(exc).__name__}",
            retryable=isinstance(exc, httpx.ConnectError),
        ) from exc
    parts = (
        response.candidates[0].content.parts
        if response.candidates and response.candidates[0].content
        else None
    ) or []
    answer = "".join(p.text for p in parts if p.text and not p.thought)
    thoughts = "".join(p.text for p in parts if p.text and p.thought)
    usage = response.usage_metadata
    input_tokens = (usage.prompt_token_count or 0) if usage else 0
    output_tokens = (
        ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
    )
    return answer, thoughts, input_tokens, output_tokens


def _openai(
    request: LlmRequest, config: catalog.ModelConfig, parameters: dict[str, Any], key: str | None
) -> _Answer:
    import openai

    compatible = request.provider in _OPENAI_COMPATIBLE
    client = (
        clients.openai_with_key(key)
        if key
        else clients.openai(request.provider if compatible else None)
    )
    options: dict[str, Any] = {
        key: parameters[key]
        for key in ("temperature", "top_p", "reasoning_effort")
        if key in parameters
    }
    length_key = "max_tokens" if compatible else "max_completion_tokens"
    options[length_key] = parameters.get("max_tokens")
    if request.responseSchema is not None and request.provider == "local":
        # llama-cpp-python's server takes the schema this way and constrains decoding to it.
        options["response_format"] = {"type": "json_object", "schema": request.responseSchema}
    elif request.responseSchema is not None:
        options["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": request.responseSchema},
        }
    try:
        response = client.chat.completions.create(
            model=request.model,
            messages=[{"role": m.role, "content": m.content} for m in request.messages],  # type: ignore[misc]
            **options,
        )
    except openai.APIStatusError as exc:
        raise UpstreamError(
            f"{request.provider} answered {exc.status_code}",
            retryable=_retryable_status(exc.status_code),
        ) from exc
    except openai.APIError as exc:
        raise UpstreamError(
            f"{request.provider} unreachable: {type(exc).__name__}",
            retryable=_never_connected(exc),
        ) from exc
    answer = (response.choices[0].message.content or "") if response.choices else ""
    usage = response.usage
    return (
        answer,
        "",
        usage.prompt_tokens if usage else 0,
        usage.completion_tokens if usage else 0,
    )


_RESPOND_TOOL = "respond"


def _anthropic(
    request: LlmRequest, config: catalog.ModelConfig, parameters: dict[str, Any], key: str | None
) -> _Answer:
    import anthropic

    client = clients.anthropic_with_key(key) if key else clients.anthropic()
    options: dict[str, Any] = {
        key: parameters[key] for key in ("temperature", "top_p") if key in parameters
    }
    system = _system_text(request)
    if system:
        options["system"] = system
    tools: list[dict[str, Any]] = [config.tool_configs()[t] for t in request.builtInTools]
    if request.responseSchema is not None:
        tools.append(
            {
                "name": _RESPOND_TOOL,
                "description": "Give the answer in the required structure.",
                "input_schema": request.responseSchema,
            }
        )
        options["tool_choice"] = {"type": "tool", "name": _RESPOND_TOOL}
    if tools:
        options["tools"] = tools
    try:
        response = client.messages.create(
            model=request.model,
            max_tokens=int(parameters["max_tokens"]),
            messages=[
                {"role": m.role, "content": m.content}  # type: ignore[misc]
                for m in request.messages
                if m.role != "system"
            ],
            **options,
        )
    except anthropic.APIStatusError as exc:
        raise UpstreamError(
            f"anthropic answered {exc.status_code}", retryable=_retryable_status(exc.status_code)
        ) from exc
    except anthropic.APIError as exc:
        raise UpstreamError(
            f"anthropic unreachable: {type(exc).__name__}", retryable=_never_connected(exc)
        ) from exc
    texts, thoughts = [], []
    for block in response.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "thinking":
            thoughts.append(block.thinking)
        elif block.type == "tool_use" and block.name == _RESPOND_TOOL:
            texts.append(json.dumps(block.input))
    return (
        "".join(texts),
        "".join(thoughts),
        response.usage.input_tokens,
        response.usage.output_tokens,
    )
