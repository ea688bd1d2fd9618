"""Connection settings of model providers, and the registry the agent picks them from.

This is the only place that knows base URLs and keys. Keys come from the environment
only (a config file names the variable, never the value) and live in :class:`Secret`,
whose ``repr``/``str`` never show them. See ``docs/providers.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec

from threadline.base.errors import ConfigurationError

ApiKind = Literal["openai", "anthropic"]
MaxTokensParam = Literal["max_tokens", "max_completion_tokens"]
#: the HTTP transport under the SDK client: aiohttp (C-parsed HTTP, the default) or httpx2's
Transport = Literal["aiohttp", "httpx"]

#: ``registry.default()`` picks the first configured provider of this order, else "dev".
DEFAULT_PREFERENCE: Final = ("anthropic", "openai", "gemini", "openrouter", "ollama", "dev")

_SENSITIVE_HEADER_WORDS: Final = ("auth", "key", "token", "secret", "cookie", "session")


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret string: ``repr``/``str`` never show it, it is never pickled; :meth:`reveal`
    shows it."""

    _value: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self._value:
            raise ValueError("a Secret cannot be empty")

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "**********"

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSettings:
    """How to reach one provider. ``repr`` is safe to log: the key is a :class:`Secret`."""

    name: str
    api: ApiKind
    base_url: str | None
    api_key: Secret | None = None
    headers: dict[str, str] = field(default_factory=dict)
    models: tuple[str, ...] = ()
    default_model: str = ""
    max_tokens: int = 4096
    temperature: float | None = None
    #: read/write timeout in seconds: the longest silence tolerated while streaming
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    #: the HTTP transport of the SDK client (docs/providers.md "Transport")
    transport: Transport = "aiohttp"
    #: display name used in error messages ("OpenAI")
    label: str = ""
    #: the environment variable that holds the key (named in error messages)
    key_env: str | None = None
    key_required: bool = True
    #: OpenAI wire only: which request field carries max_tokens
    max_tokens_param: MaxTokensParam = "max_tokens"
    #: context windows in tokens by model name (``"*"``: every model); models not named
    #: here get the catalogue's (``services/agent/context.py``)
    context_tokens: dict[str, int] = field(default_factory=dict)
    #: usable without the user asking for it (a key is set, or its URL is)
    configured: bool = False

    @property
    def display_name(self) -> str:
        return self.label or self.name

    def model_for(self, requested: str = "") -> str:
        """The model a request naming ``requested`` goes to: it, else the default, else
        the first listed (the one rule for a provider's default model)."""
        return requested or self.default_model or next(iter(self.models), "")

    @property
    def missing_key(self) -> bool:
        return self.key_required and self.api_key is None

    def secrets(self) -> tuple[str, ...]:
        """Secret values to register with a redactor: the key and sensitive headers."""
        values = [self.api_key.reveal()] if self.api_key is not None else []
        for name, value in self.headers.items():
            if any(word in name.lower() for word in _SENSITIVE_HEADER_WORDS):
                values.append(value.removeprefix("Bearer ").removeprefix("bearer "))
        return tuple(values)

    def check_ready(self) -> None:
        """Raise :class:`ConfigurationError` if a request could not even be attempted."""
        if self.missing_key:
            env = self.key_env or "the provider's key_env variable"
            raise ConfigurationError(
                f"provider {self.name!r} needs an API key: set {env} (no request was sent)"
            )
        if not self.base_url:
            raise ConfigurationError(
                f"provider {self.name!r} has no base URL: set base_url in the config file"
            )
        if not (self.default_model or self.models):
            raise ConfigurationError(
                f"provider {self.name!r} has no model: set default_model in the config file"
            )


class ProviderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Public facts about a provider, for a model picker. Never keys, never URLs."""

    name: str
    label: str
    api: ApiKind
    models: tuple[str, ...]
    default_model: str
    configured: bool


class ProviderRegistry:
    """The providers this process knows, by name."""

    def __init__(
        self,
        providers: Mapping[str, ProviderSettings],
        *,
        default: str | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._default = default
        if default is not None and default not in self._providers:
            raise ConfigurationError(
                f"default provider {default!r} is not defined; known: {', '.join(self.names())}"
            )

    def names(self) -> tuple[str, ...]:
        return tuple(self._providers)

    def settings(self, name: str) -> ProviderSettings:
        """The settings of ``name`` as they are, usable or not (no key check)."""
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(self.names())
            raise ConfigurationError(f"unknown provider {name!r}; known: {known}") from None

    def get(self, name: str) -> ProviderSettings:
        """Settings ready for an adapter; :class:`ConfigurationError` (naming the env
        variable to set) when a key or URL is missing. Never touches the network."""
        settings = self.settings(name)
        settings.check_ready()
        return settings

    def default_name(self) -> str:
        configured = (
            n for n in DEFAULT_PREFERENCE if (p := self._providers.get(n)) and p.configured
        )
        return self._default or next(configured, "dev")

    def default(self) -> ProviderSettings:
        """The configured default, else the first configured provider of
        :data:`DEFAULT_PREFERENCE`, else the dev model."""
        return self.get(self.default_name())

    def describe(self) -> tuple[ProviderInfo, ...]:
        return tuple(
            ProviderInfo(
                name=p.name,
                label=p.display_name,
                api=p.api,
                models=p.models,
                default_model=p.default_model,
                configured=p.configured and not p.missing_key and bool(p.base_url),
            )
            for p in self._providers.values()
        )

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for p in self._providers.values() for s in p.secrets())
