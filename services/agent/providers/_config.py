"""The provider registry as configured: built-in providers, the config-file overlay,
and :func:`load_providers` that puts them together."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Final

import msgspec

from threadline.base.errors import ConfigurationError
from threadline.base.redact import Redactor, default_redactor
from threadline.services.agent.providers.settings import (
    ApiKind,
    MaxTokensParam,
    ProviderRegistry,
    ProviderSettings,
    Secret,
    Transport,
)
from threadline.services.devmodel.settings import DEFAULT_MODEL as DEV_MODEL

OLLAMA_URL: Final = "http://localhost:11434"
DEV_MODELS: Final = (DEV_MODEL,)

#: the built-in providers with a key: name -> (label, wire API, base URL, models); the
#: key is in ``<NAME>_API_KEY`` (Ollama's is optional)
_BUILTIN: Final[dict[str, tuple[str, ApiKind, str, tuple[str, ...]]]] = {
    "openai": (
        "OpenAI",
        "openai",
        "https://api.openai.com/v1",
        ("gpt-4.1-mini", "gpt-4.1", "gpt-4o-mini", "gpt-4o", "o4-mini"),
    ),
    "anthropic": (
        "Anthropic",
        "anthropic",
        "https://api.anthropic.com",
        ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"),
    ),
    "gemini": (
        "Gemini",
        "openai",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"),
    ),
    "openrouter": (
        "OpenRouter",
        "openai",
        "https://openrouter.ai/api/v1",
        ("openai/gpt-4.1-mini", "anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash"),
    ),
    "ollama": ("Ollama", "openai", OLLAMA_URL + "/v1", ("llama3.2", "qwen3", "mistral")),
}
#: the variables that make a built-in provider usable: its key (Ollama: its URL)
PROVIDER_VARS: Final = (
    *(f"{name.upper()}_API_KEY" for name in _BUILTIN if name != "ollama"),
    "OLLAMA_BASE_URL",
)
#: optional headers of built-in providers: header -> environment variable
_HEADERS: Final = {
    "openai": {"OpenAI-Organization": "OPENAI_ORG_ID", "OpenAI-Project": "OPENAI_PROJECT_ID"},
    "openrouter": {"HTTP-Referer": "OPENROUTER_SITE_URL", "X-Title": "OPENROUTER_APP_NAME"},
}


def _env(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _secret(env: Mapping[str, str], name: str | None) -> Secret | None:
    value = _env(env, name) if name else None
    return Secret(value) if value else None


def _with_suffix(url: str, suffix: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith(suffix) else url + suffix


def builtin_providers(env: Mapping[str, str]) -> dict[str, ProviderSettings]:
    """openai, anthropic, gemini, openrouter, ollama, dev and dev-anthropic."""
    out: dict[str, ProviderSettings] = {}
    for name, (label, api, url, models) in _BUILTIN.items():
        key_env = f"{name.upper()}_API_KEY"
        key = _secret(env, key_env)
        out[name] = ProviderSettings(
            name=name,
            api=api,
            base_url=url,
            api_key=key,
            headers={h: v for h, var in _HEADERS.get(name, {}).items() if (v := _env(env, var))},
            models=models,
            default_model=models[0],
            label=label,
            key_env=key_env,
            max_tokens_param="max_completion_tokens" if name == "openai" else "max_tokens",
            configured=key is not None,
        )
    ollama_url = _env(env, "OLLAMA_BASE_URL")
    out["ollama"] = dataclasses.replace(
        out["ollama"],
        base_url=_with_suffix(ollama_url or OLLAMA_URL, "/v1"),
        key_required=False,
        configured=ollama_url is not None,
    )
    dev_url = _env(env, "THREADLINE_DEVMODEL_URL")
    for name, api, dev_base in (
        ("dev", "openai", dev_url and _with_suffix(dev_url, "/v1")),
        ("dev-anthropic", "anthropic", dev_url and dev_url.rstrip("/")),
    ):
        out[name] = ProviderSettings(
            name=name,
            api="anthropic" if api == "anthropic" else "openai",
            base_url=dev_base,
            models=DEV_MODELS,
            default_model=DEV_MODELS[0],
            label="Threadline dev model",
            key_required=False,
            configured=dev_url is not None,
        )
    return out


# ------------------------------------------------------------------------ config file

_Text = Annotated[str, msgspec.Meta(min_length=1)]
_Count = Annotated[int, msgspec.Meta(gt=0)]
_Seconds = Annotated[float, msgspec.Meta(gt=0)]


class _Entry(msgspec.Struct, forbid_unknown_fields=True):
    """One ``[providers.<name>]`` table; a key left out is None (TOML has no null)."""

    api: ApiKind | None = None
    label: _Text | None = None
    base_url: Annotated[str, msgspec.Meta(pattern="^https?://")] | None = None
    key_env: _Text | None = None
    key_required: bool | None = None
    headers: dict[str, str] | None = None
    #: header -> the environment variable holding its value
    headers_env: dict[str, str] | None = None
    models: tuple[_Text, ...] | None = None
    default_model: _Text | None = None
    max_tokens: _Count | None = None
    max_tokens_param: MaxTokensParam | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0)] | None = None
    timeout_s: _Seconds | None = None
    connect_timeout_s: _Seconds | None = None
    transport: Transport | None = None
    #: a number of tokens, or a table of model name -> tokens
    context_tokens: _Count | dict[_Text, _Count] | None = None


def _fail(provider: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"config: provider {provider!r}: {message}")


def _parse_entry(name: str, entry: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Validated ProviderSettings fields from one ``[providers.<name>]`` table."""
    if "api_key" in entry:
        raise _fail(
            name,
            "api_key is not accepted in a config file; put the key in an "
            "environment variable and name that variable with key_env",
        )
    try:
        parsed = msgspec.convert(entry, _Entry)
    except msgspec.ValidationError as exc:
        allowed = ", ".join(_Entry.__struct_fields__)
        raise _fail(name, f"{exc} (allowed keys: {allowed})") from None
    fields = {k: v for k, v in msgspec.structs.asdict(parsed).items() if v is not None}
    if isinstance(windows := fields.get("context_tokens"), int):
        fields["context_tokens"] = {"*": windows}
    for header, var in fields.pop("headers_env", {}).items():
        value = _env(env, var)
        if value is None:
            raise _fail(name, f"header {header!r} comes from {var}, which is not set")
        fields.setdefault("headers", {})[header] = value
    return fields


def _overlay(
    name: str, base: ProviderSettings | None, fields: dict[str, Any], env: Mapping[str, str]
) -> ProviderSettings:
    if base is not None and fields.get("api", base.api) != base.api:
        raise _fail(name, f"api of a built-in provider cannot change (it is {base.api!r})")
    if base is None:
        if "base_url" not in fields:
            raise _fail(name, "a custom provider needs base_url")
        fields.setdefault("key_required", "key_env" in fields)
        base = ProviderSettings(name=name, api="openai", base_url=None, label=name)
    if "headers" in fields:
        fields["headers"] = {**base.headers, **fields["headers"]}
    if "key_env" in fields:
        fields["api_key"] = _secret(env, fields["key_env"])
    models = fields.get("models")
    if models is not None and "default_model" not in fields and base.default_model not in models:
        fields["default_model"] = models[0] if models else ""
    merged = dataclasses.replace(base, **fields)
    keyless = not merged.key_required and (merged.configured or "base_url" in fields)
    return dataclasses.replace(merged, configured=merged.api_key is not None or keyless)


def load_providers(
    env: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
    *,
    redactor: Redactor | None = None,
) -> ProviderRegistry:
    """Build the registry from environment variables and the config file's
    ``[providers]`` table (parsed by the caller, e.g. ``Settings.providers``): provider
    name -> table of overrides, plus an optional ``default = "<name>"``. The keys are
    documented in ``docs/providers.md``.

    Every key and sensitive header value is registered with ``redactor`` (the
    process-wide default redactor unless one is given).
    """
    providers, config = builtin_providers(env), config or {}
    default = config.get("default")
    if default is not None and not isinstance(default, str):
        raise ConfigurationError(
            f"config: providers.default must be a provider name, not {default!r}"
        )
    for name, entry in config.items():
        if name == "default":
            continue
        if not isinstance(entry, Mapping):
            raise ConfigurationError(
                f"config: providers.{name} must be a table (or providers.default a name)"
            )
        providers[name] = _overlay(name, providers.get(name), _parse_entry(name, entry, env), env)
    registry = ProviderRegistry(providers, default=default)
    (redactor if redactor is not None else default_redactor()).add(*registry.secrets())
    return registry
