"""A small `litellm` for gofannon 15363b1 agent code: `acompletion` only.

`acompletion(model="provider/model", messages=...)` goes through the
platform's LLM gateway like `services.llm_service.call_llm`, and answers
with the shape agent code reads: `response.choices[0].message.content`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.llm_service import call_llm

_PARAMETERS = ("temperature", "max_tokens", "top_p", "reasoning_effort")


@dataclass
class Message:
    """The assistant's message."""

    content: str
    role: str = "assistant"
    reasoning_content: Any = None


@dataclass
class Choice:
    """One choice of a completion."""

    message: Message
    index: int = 0
    finish_reason: str = "stop"


@dataclass
class ModelResponse:
    """A completion, shaped like litellm's."""

    model: str
    choices: list[Choice] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


async def acompletion(model: str, messages: list[Any], **kwargs: Any) -> ModelResponse:
    """Complete a conversation with `model` given as `provider/model`."""
    provider, _, name = model.partition("/")
    if not name:
        raise ValueError("model must be given as 'provider/model'")
    parameters = {key: kwargs[key] for key in _PARAMETERS if kwargs.get(key) is not None}
    content, thoughts = await call_llm(provider, name, messages, parameters)
    return ModelResponse(
        model=model, choices=[Choice(message=Message(content=content, reasoning_content=thoughts))]
    )
