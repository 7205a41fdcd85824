"""The LLM provider catalog (data in `catalog.json`) and parameter validation.

Per model: its parameters (type `integer | float | choice | list_choice`,
default, min, max, choices, and the parameters each may not be set together
with), built-in tools (`[{id, description, tool}]`, `tool` being the
provider's tool configuration), the context window, and prices per million
input and output tokens: the shape the gofannon web UI reads. A parameter
that excludes another has no default, so a client sending every default
sends a valid set. A provider is listed only when it is configured.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from shared.platform.config import get_settings
from shared.platform.errors import InvalidInput, NotFound
from shared.platform.models import Model

CATALOG_PATH = Path(__file__).with_name("catalog.json")


class Parameter(Model):
    """One tunable parameter of a model."""

    type: Literal["integer", "float", "choice", "list_choice"]
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = None
    description: str = ""
    mutually_exclusive_with: list[str] = Field(default_factory=list)


class Price(Model):
    """USD per million tokens."""

    inputPerMillion: float  # noqa: N815 - API field name
    outputPerMillion: float  # noqa: N815 - API field name


class BuiltInTool(Model):
    """A tool the provider runs itself, and how to ask for it."""

    id: str
    description: str
    tool: dict[str, Any]


class ModelConfig(Model):
    """One model of a provider."""

    displayName: str  # noqa: N815 - API field name
    contextWindow: int  # noqa: N815 - API field name
    price: Price
    parameters: dict[str, Parameter]
    built_in_tools: list[BuiltInTool] = Field(default_factory=list)

    def tool_configs(self) -> dict[str, dict[str, Any]]:
        """The provider's configuration of each built-in tool, by id."""
        return {tool.id: tool.tool for tool in self.built_in_tools}


class ProviderConfig(Model):
    """One provider and its models."""

    displayName: str  # noqa: N815 - API field name
    models: dict[str, ModelConfig]


@cache
def _catalog() -> dict[str, ProviderConfig]:
    data = json.loads(CATALOG_PATH.read_text())
    return {name: ProviderConfig.model_validate(entry) for name, entry in data.items()}


def providers(also: Collection[str] = ()) -> dict[str, ProviderConfig]:
    """The configured providers, keyed by slug.

    Args:
        also: Providers the caller holds an API key of their own for, listed
            even when the platform has none.
    """
    usable = set(get_settings().configured_llm_providers()) | set(also)
    return {name: config for name, config in _catalog().items() if name in usable}


def provider(name: str, also: Collection[str] = ()) -> ProviderConfig:
    """One configured provider (or one in `also`, the caller's own keys).

    Raises:
        NotFound: Unknown or not configured.
    """
    found = providers(also).get(name)
    if found is None:
        raise NotFound(f"Provider '{name}' not found")
    return found


def model(provider_name: str, model_name: str, also: Collection[str] = ()) -> ModelConfig:
    """One model of a configured provider (or of one in `also`, the caller's own keys).

    Raises:
        NotFound: Unknown provider or model.
    """
    found = provider(provider_name, also).models.get(model_name)
    if found is None:
        raise NotFound(f"Model '{model_name}' not found for provider '{provider_name}'")
    return found


def validate_parameters(config: ModelConfig, parameters: dict[str, Any]) -> dict[str, Any]:
    """Check caller-set parameters against a model's catalog entry.

    Args:
        config: The model.
        parameters: What the caller set.

    Returns:
        The parameters with `max_tokens` filled from the default when unset.

    Raises:
        InvalidInput: Unknown parameter, wrong type, out of range, not a
            choice, or two mutually exclusive parameters set together.
    """
    for name, value in parameters.items():
        spec = config.parameters.get(name)
        loc = ("body", "parameters", name)
        if spec is None:
            raise InvalidInput(f"Unknown parameter '{name}'", loc=loc)
        _check_value(spec, value, name, loc)
    for name in parameters:
        for other in config.parameters[name].mutually_exclusive_with:
            if other in parameters:
                raise InvalidInput(
                    f"Parameters {name} and {other} cannot be set together",
                    loc=("body", "parameters"),
                )
    checked = dict(parameters)
    if "max_tokens" in config.parameters:
        checked.setdefault("max_tokens", config.parameters["max_tokens"].default)
    return checked


def _check_value(spec: Parameter, value: Any, name: str, loc: tuple[str | int, ...]) -> None:
    kinds: dict[str, tuple[type, ...]] = {
        "integer": (int,),
        "float": (int, float),
        "choice": (str,),
        "list_choice": (list,),
    }
    if isinstance(value, bool) or not isinstance(value, kinds[spec.type]):
        raise InvalidInput(f"Parameter '{name}' must be of type {spec.type}", loc=loc)
    if isinstance(value, int | float) and (
        (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max)
    ):
        raise InvalidInput(f"Parameter '{name}' must be between {spec.min} and {spec.max}", loc=loc)
    picked = value if isinstance(value, list) else [value]
    if spec.choices is not None and any(item not in spec.choices for item in picked):
        raise InvalidInput(f"Parameter '{name}' must be one of {spec.choices}", loc=loc)


def validate_tools(config: ModelConfig, tools: list[str]) -> None:
    """Check that every requested built-in tool exists for the model.

    Raises:
        InvalidInput: An unknown tool.
    """
    for index, tool in enumerate(tools):
        if tool not in config.tool_configs():
            raise InvalidInput(
                f"Unknown built-in tool '{tool}'", loc=("body", "builtInTools", index)
            )


def cost(config: ModelConfig, input_tokens: int, output_tokens: int) -> float:
    """Price a call from its token usage.

    Returns:
        USD.
    """
    return (
        input_tokens * config.price.inputPerMillion + output_tokens * config.price.outputPerMillion
    ) / 1_000_000
