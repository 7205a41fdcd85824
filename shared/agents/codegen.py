"""Code generation that survives what real models answer.

Both code generators (`composer` for agents, `demos` for demo pages) ask a
model for one JSON object and go through `generate`:

- the request asks for as many output tokens as the model allows within its
  context window once the prompt is in (`sized`), from the catalog, so a
  small model's answer is not cut at a small default limit;
- the answer is parsed leniently (`parse_object`, with `json-repair`): raw
  newlines in strings, code fences, text around the object, an answer cut
  off at the token limit;
- the caller's `check` turns the object into the result or says what is
  wrong with it (`Unusable`); the model is then asked once more, with what
  was wrong appended to the request;
- a second unusable answer is a 502 whose detail says what the model got
  wrong. Each model call is charged (or paid by the caller's own key) as
  `metering.charged_completion` does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from shared.agents import api_keys, metering
from shared.llm import gateway
from shared.platform.auth import Principal
from shared.platform.errors import BadGateway, InvalidInput

T = TypeVar("T")
ATTEMPTS = 2
# Conservative for sizing against a context window: code and JSON tokenize densely.
_CHARS_PER_TOKEN = 3
_TOKENS_PER_MESSAGE = 8
_MIN_ANSWER_TOKENS = 256
# Enough for an agent or a demo page; more would only raise the reservation held for the call.
ANSWER_TOKENS = 16_384


class Unusable(Exception):
    """A model's answer that cannot be used; `reason` says why, for the model and the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_object(text: str) -> dict[str, Any]:
    """Read the JSON object in a model's answer, repairing what models get wrong.

    First the first complete object in the text, control characters (raw
    newlines) allowed in its strings and any text around it ignored; when
    there is none, `json_repair` (code fences, a cut end, missing quotes or
    commas), taking the first object when it reads several values.

    Raises:
        Unusable: No JSON object could be read from the answer.
    """
    value: Any = None
    start = text.find("{")
    if start >= 0:
        with contextlib.suppress(ValueError):
            value, _ = json.JSONDecoder(strict=False).raw_decode(text, start)
    if not isinstance(value, dict):
        import json_repair

        value = json_repair.loads(text)
        if isinstance(value, list) and value:
            value = value[0]
    if not isinstance(value, dict) or not value:
        raise Unusable("the answer was not a JSON object")
    return value


def string_field(answer: dict[str, Any], name: str, *, required: bool = True) -> str:
    """A string field of the answer ("" when absent and not required).

    Raises:
        Unusable: The field is missing (and required) or not a string.
    """
    value = answer.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise Unusable(f"the field `{name}` was {kind}")
    return value


def sized(request: gateway.LlmRequest, keyed: list[str]) -> gateway.LlmRequest:
    """The request with `max_tokens` raised to what the model can give after the prompt.

    The limit is `ANSWER_TOKENS` (or the caller's larger value) within the
    model's `max_tokens` maximum and its context window less the prompt
    (estimated at 3 characters a token).

    Raises:
        InvalidInput: The prompt leaves too little of the context window for an answer.
    """
    config, _ = gateway.prepare(request, keyed)
    spec = config.parameters.get("max_tokens")
    if spec is None:
        return request
    prompt = sum(len(m.content) // _CHARS_PER_TOKEN + _TOKENS_PER_MESSAGE for m in request.messages)
    room = config.contextWindow - prompt
    if room < _MIN_ANSWER_TOKENS:
        raise InvalidInput(
            f"The request (about {prompt} tokens) leaves too little of {request.model}'s "
            f"context window ({config.contextWindow} tokens) for an answer; shorten it",
            loc=("body",),
        )
    wanted = max(int(request.parameters.get("max_tokens") or 0), ANSWER_TOKENS)
    most = int(spec.max) if spec.max is not None else wanted
    return request.model_copy(
        update={"parameters": {**request.parameters, "max_tokens": min(wanted, most, room)}}
    )


def _asked_again(request: gateway.LlmRequest, reason: str) -> gateway.LlmRequest:
    last = request.messages[-1]
    again = (
        f"{last.content}\n\nYour previous answer could not be used: {reason}. "
        "Answer again with only the JSON object asked for."
    )
    messages = [*request.messages[:-1], gateway.Message(role=last.role, content=again)]
    return request.model_copy(update={"messages": messages})


def generate(
    principal: Principal,
    payer: str,
    request: gateway.LlmRequest,
    *,
    source: str,
    check: Callable[[dict[str, Any], gateway.LlmResult], T],
    what: str,
) -> T:
    """Ask for a JSON object and return `check`'s result, asking once more if it is unusable.

    Args:
        principal: The caller.
        payer: The user charged for each model call.
        request: The model call; its last message is the user's request.
        source: What the ledger entries say the calls were for.
        check: Turns the parsed object (and the call's result) into the answer,
            raising `Unusable` with what is wrong.
        what: What was asked for, for the 502 detail (e.g. "the agent's code").

    Raises:
        InvalidInput: The request does not fit the catalog or the model's context window.
        PaymentRequired: The allowance cannot cover a call.
        Unavailable: The provider failed.
        BadGateway: Both answers were unusable; the detail says what was wrong.
    """
    keyed = api_keys.keyed_providers(payer)
    asked = request
    reason = ""
    for _ in range(ATTEMPTS):
        result = metering.charged_completion(principal, payer, sized(asked, keyed), source)
        try:
            return check(parse_object(result.content), result)
        except Unusable as exc:
            reason = exc.reason
            asked = _asked_again(request, reason)
    raise BadGateway(f"The model did not answer with {what}: {reason} (asked {ATTEMPTS} times)")
