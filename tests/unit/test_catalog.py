"""Catalog data and parameter validation (no I/O)."""

from __future__ import annotations

import pytest

from shared.llm import catalog
from shared.platform.errors import InvalidInput
from shared.social.matches import elo_delta


@pytest.fixture
def gpt():
    return catalog.ModelConfig.model_validate(
        catalog._catalog()["openai"].models["gpt-4.1-mini"].model_dump()
    )


def test_every_model_is_priced_and_bounded():
    for provider in catalog._catalog().values():
        for config in provider.models.values():
            assert config.price.inputPerMillion >= 0
            assert config.contextWindow > 0
            assert "max_tokens" in config.parameters
            for name, spec in config.parameters.items():
                for other in spec.mutually_exclusive_with:
                    assert name in config.parameters[other].mutually_exclusive_with
                    assert spec.default is None or config.parameters[other].default is None
                if spec.type in ("choice", "list_choice"):
                    assert spec.choices
                if spec.type in ("integer", "float"):
                    assert spec.min is not None and spec.max is not None


def test_valid_parameters_get_max_tokens_default(gpt):
    assert catalog.validate_parameters(gpt, {"temperature": 0.3}) == {
        "temperature": 0.3,
        "max_tokens": 4096,
    }


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"temperature": 2.5}, "between"),
        ({"temperature": True}, "type float"),
        ({"max_tokens": 1.5}, "type integer"),
        ({"reasoning_effort": "extreme"}, "one of"),
        ({"temperature": 0.2, "top_p": 0.5}, "cannot be set together"),
        ({"frequency": 1}, "Unknown parameter"),
    ],
)
def test_invalid_parameters(gpt, parameters, message):
    with pytest.raises(InvalidInput, match=message):
        catalog.validate_parameters(gpt, parameters)


def test_list_choice_takes_a_list_of_choices():
    config = catalog.ModelConfig.model_validate(
        {
            "displayName": "m",
            "contextWindow": 1,
            "price": {"inputPerMillion": 0, "outputPerMillion": 0},
            "parameters": {
                "max_tokens": {"type": "integer", "default": 1, "min": 1, "max": 2},
                "modalities": {"type": "list_choice", "choices": ["text", "audio"]},
            },
        }
    )

    assert catalog.validate_parameters(config, {"modalities": ["text", "audio"]})
    with pytest.raises(InvalidInput, match="one of"):
        catalog.validate_parameters(config, {"modalities": ["video"]})
    with pytest.raises(InvalidInput, match="type list_choice"):
        catalog.validate_parameters(config, {"modalities": "text"})


def test_cost_uses_prices_per_million(gpt):
    assert catalog.cost(gpt, 1_000_000, 500_000) == pytest.approx(0.40 + 0.80)


def test_elo_is_zero_sum_and_favours_the_underdog():
    even = elo_delta(1600, 1600, 1.0, 32)
    upset = elo_delta(1400, 1800, 1.0, 32)
    expected_win = elo_delta(1800, 1400, 1.0, 32)

    assert even == 16
    assert upset > even > expected_win
    assert elo_delta(1600, 1600, 0.0, 32) == -16
