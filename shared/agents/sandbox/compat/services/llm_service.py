"""`services.llm_service.call_llm` as gofannon 81e4595 agent code calls it.

The call goes to the platform's LLM gateway with the run's token, so it is
checked against the catalog, charged to the calling user and limited like
any chat.
"""

from __future__ import annotations

import time
from typing import Any

import sandbox_runtime


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def _messages(messages: list[Any]) -> list[dict[str, str]]:
    return [
        {"role": str(m.get("role", "user")), "content": _text(m.get("content", ""))}
        for m in messages
        if isinstance(m, dict)
    ]


async def call_llm(  # noqa: PLR0917 - gofannon's signature, called positionally too
    provider: str,
    model: str,
    messages: list[Any],
    parameters: dict[str, Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> tuple[str, Any]:
    """Call a catalog model; returns `(content, thoughts)`.

    `tools` (function calling) and gofannon's user-context keyword arguments
    are accepted for compatibility and not forwarded.
    """
    runtime = sandbox_runtime.current()
    settings = runtime.context.get("llmSettings") or {}
    overrides = settings.get(f"{provider}/{model}") or settings.get("*") or {}
    payload = {
        "provider": provider,
        "model": model,
        "messages": _messages(messages),
        "parameters": {**(parameters or {}), **overrides},
    }
    started = time.monotonic()
    error = None
    try:
        answer = await runtime.post("/agents/run-code/llm", payload)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        runtime.emit(
            {
                "trace": {
                    "type": "llm_call",
                    "provider": provider,
                    "model": model,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "error": error,
                }
            }
        )
    return answer["content"], answer.get("thoughts")
