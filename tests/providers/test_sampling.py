"""Which session settings each wire API takes (checked when a session is created)."""

from __future__ import annotations

from typing import Any

import pytest

from threadline.base.errors import InvalidField
from threadline.events.schema import GenerationParams
from threadline.services.agent.providers.sampling import check_params, provider_api


@pytest.mark.parametrize(
    ("api", "params"),
    [
        ("openai", {"temperature": 2.0, "top_p": 0.1, "max_tokens": 5, "max_steps": 3}),
        ("anthropic", {"temperature": 1.0, "top_p": 0.1, "max_tokens": 5}),
        ("anthropic", {"reasoning_budget_tokens": 1024}),
        ("anthropic", {"reasoning_budget_tokens": 2000, "max_tokens": 2001, "top_p": 0.95}),
        (None, {"temperature": 0.5, "top_p": 0.5}),
    ],
)
def test_accepted(api: Any, params: dict[str, Any]) -> None:
    check_params(api, "p", GenerationParams(**params))


@pytest.mark.parametrize(
    ("api", "params", "field", "words"),
    [
        ("openai", {"reasoning_budget_tokens": 2048}, "reasoning_budget_tokens", "'p' takes no"),
        (None, {"reasoning_budget_tokens": 2048}, "reasoning_budget_tokens", "no thinking"),
        ("anthropic", {"temperature": 1.5}, "temperature", "0 to 1"),
        ("anthropic", {"reasoning_budget_tokens": 1023}, "reasoning_budget_tokens", "1024"),
        (
            "anthropic",
            {"reasoning_budget_tokens": 2048, "max_tokens": 2048},
            "reasoning_budget_tokens",
            "less than max_tokens",
        ),
        ("anthropic", {"reasoning_budget_tokens": 2048, "temperature": 1.0}, "temperature", ""),
        ("anthropic", {"reasoning_budget_tokens": 2048, "top_p": 0.9}, "top_p", "0.95"),
    ],
)
def test_refused_naming_the_field(api: Any, params: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidField) as info:
        check_params(api, "p", GenerationParams(**params))
    assert info.value.field == f"params.{field}"
    assert words in info.value.reason


@pytest.mark.parametrize(
    ("name", "section", "api"),
    [
        ("anthropic", {}, "anthropic"),
        ("dev-anthropic", {"models": ["m"]}, "anthropic"),
        ("dev", {}, "openai"),
        ("ollama", {"base_url": "http://x/v1"}, "openai"),
        ("lab", {"base_url": "http://x"}, "openai"),
        ("lab", {"api": "anthropic"}, "anthropic"),
    ],
)
def test_provider_api_of_a_config_table(name: str, section: dict[str, Any], api: str) -> None:
    assert provider_api(name, section) == api
