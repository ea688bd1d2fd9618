"""What each wire API accepts of a session's settings (``GenerationParams``).

Checked once, when a session is created (the catalog check of the command layer), so a
setting the provider cannot honour is a 422 naming the field instead of a setting stored
and ignored. The adapters then send every setting as given (``openai_map``,
``anthropic_map``). The table is in docs/providers.md, "Session settings".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from threadline.base.errors import InvalidField
from threadline.events.schema import GenerationParams
from threadline.services.agent.providers._config import builtin_providers
from threadline.services.agent.providers.settings import ApiKind

#: Anthropic extended thinking: the smallest budget, and the least top_p allowed with it
MIN_THINKING_BUDGET: Final = 1024
MIN_TOP_P_THINKING: Final = 0.95
#: Anthropic's temperature range is 0 to 1 (OpenAI's, like the API's, 0 to 2)
MAX_ANTHROPIC_TEMPERATURE: Final = 1.0


def provider_api(name: str, section: Mapping[str, Any]) -> ApiKind:
    """The wire API of provider ``name`` configured by ``section`` (its
    ``[providers.NAME]`` table): the table's ``api``, else the built-in's, else OpenAI's."""
    api = section.get("api")
    if api in ("openai", "anthropic"):
        return cast(ApiKind, api)
    builtin = builtin_providers({}).get(name)
    return builtin.api if builtin is not None else "openai"


def check_params(api: ApiKind | None, provider: str, params: GenerationParams) -> None:
    """Raise :class:`InvalidField` (``params.<name>``) for a setting that ``provider``,
    speaking ``api`` (None: not known), cannot honour."""
    if api == "anthropic":
        _check_anthropic(params)
    elif params.reasoning_budget_tokens is not None:
        raise InvalidField(
            "params.reasoning_budget_tokens",
            f"provider {provider!r} takes no thinking budget (OpenAI Chat Completions has "
            "none); choose an Anthropic provider or leave it out",
        )


def _check_anthropic(p: GenerationParams) -> None:
    if p.temperature is not None and p.temperature > MAX_ANTHROPIC_TEMPERATURE:
        raise InvalidField("params.temperature", "Anthropic takes a temperature from 0 to 1")
    budget = p.reasoning_budget_tokens
    if budget is None:
        return
    if budget < MIN_THINKING_BUDGET:
        raise InvalidField(
            "params.reasoning_budget_tokens",
            f"Anthropic's thinking budget is at least {MIN_THINKING_BUDGET} tokens",
        )
    if p.max_tokens is not None and budget >= p.max_tokens:
        raise InvalidField(
            "params.reasoning_budget_tokens",
            "must be less than max_tokens (the thinking counts towards them)",
        )
    if p.temperature is not None:
        raise InvalidField("params.temperature", "leave it unset with a thinking budget")
    if p.top_p is not None and p.top_p < MIN_TOP_P_THINKING:
        raise InvalidField(
            "params.top_p", f"with a thinking budget it is {MIN_TOP_P_THINKING} to 1, or unset"
        )
