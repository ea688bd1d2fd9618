"""What a session may ask for: providers with their models, and MCP tool servers.

Commands only need names. :class:`Catalog` is the port; :class:`StaticCatalog`
reads them from the configuration (``[providers]`` and ``[mcp_servers]`` tables) and
always offers the local dev model. The agent's provider registry can be adapted to
the same protocol later (``describe()`` gives names, models and default models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from threadline.base.config import DoubleTexting, Settings
from threadline.base.errors import InvalidField
from threadline.events.schema import GenerationParams
from threadline.services.agent.providers.sampling import check_params, provider_api

DEV_PROVIDER = "dev"
DEV_MODEL = "threadline-dev"


class ProviderEntry(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    #: the models offered; empty means any model name is accepted
    models: tuple[str, ...] = ()
    default_model: str = ""
    #: the wire API it speaks, which decides the session settings it takes (None: unknown)
    api: Literal["openai", "anthropic"] | None = None


class Catalog(msgspec.Struct, frozen=True):
    """What a session may ask for: the providers with their models (never keys or URLs;
    the deployment's default first), the MCP tool servers, and the deployment's limits:
    tool steps per turn and output tokens per reply (default: the default settings'),
    and its double-texting policy for sessions that chose none."""

    providers: Sequence[ProviderEntry]
    tool_servers: Sequence[str] = ()
    max_steps: int = msgspec.field(default_factory=lambda: Settings().max_steps)
    max_tokens: int = msgspec.field(default_factory=lambda: Settings().max_tokens)
    double_texting: DoubleTexting = "enqueue"

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        """From the configuration (``[providers]``, ``[mcp_servers]``), with the dev model."""
        dev = ProviderEntry(
            name=DEV_PROVIDER, models=(DEV_MODEL,), default_model=DEV_MODEL, api="openai"
        )
        entries = [dev]
        for name, section in sorted(settings.providers.items()):
            if isinstance(section, Mapping) and name != DEV_PROVIDER:
                entries.append(_entry(name, section))
        default = settings.providers.get("default")
        entries.sort(key=lambda entry: entry.name != default)  # the default first
        return cls(
            entries, sorted(settings.mcp_servers), settings.max_steps, settings.max_tokens,
            settings.double_texting,
        )  # fmt: skip


def _entry(name: str, section: Mapping[str, Any]) -> ProviderEntry:
    raw = section.get("models") or ()
    models = tuple(str(m) for m in raw) if isinstance(raw, list | tuple) else ()
    default = section.get("default_model")
    default_model = str(default) if default else (models[0] if models else "")
    if default_model and models and default_model not in models:
        models = (default_model, *models)
    return ProviderEntry(
        name=name, models=models, default_model=default_model, api=provider_api(name, section)
    )


def check_choice(
    catalog: Catalog,
    provider: str,
    model: str,
    tool_servers: Sequence[str],
    params: GenerationParams | None = None,
) -> tuple[str, str]:
    """Validate a session's provider, model, tool servers and ``params`` (settings the
    provider cannot honour, more steps than the deployment's limit); return (provider,
    model).

    An empty provider means the deployment's default; a model given without a
    provider selects the first provider offering it. Raises :class:`InvalidField`.
    """
    entries = {entry.name: entry for entry in catalog.providers}
    if provider:
        entry = entries.get(provider)
        if entry is None:
            raise InvalidField("provider", f"unknown provider {provider!r}; see GET /v1/providers")
        if model and entry.models and model not in entry.models:
            raise InvalidField(
                "model", f"provider {provider!r} has no model {model!r}; see GET /v1/providers"
            )
    elif model:
        offering = [e.name for e in entries.values() if model in e.models]
        if not offering:
            raise InvalidField("model", f"no provider offers model {model!r}")
        provider = offering[0]
    for server in tool_servers:
        if server not in catalog.tool_servers:
            raise InvalidField("tool_servers", f"unknown tool server {server!r}")
    if params is not None:
        _check_params(catalog, provider, params)
    return provider, model


def _check_params(catalog: Catalog, provider: str, params: GenerationParams) -> None:
    limit = catalog.max_steps
    if params.max_steps is not None and params.max_steps > limit:
        raise InvalidField(
            "params.max_steps", f"this deployment allows at most {limit} tool steps per turn"
        )
    tokens = catalog.max_tokens
    if params.max_tokens is not None and params.max_tokens > tokens:
        raise InvalidField(
            "params.max_tokens", f"this deployment allows at most {tokens} output tokens"
        )
    # no provider: the default, listed first
    entry = next((e for e in catalog.providers if e.name == provider or not provider), None)
    check_params(entry.api if entry else None, entry.name if entry else provider, params)
