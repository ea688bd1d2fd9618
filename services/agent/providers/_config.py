"""The provider registry as configured: built-in providers, the config-file overlay,
and :func:`load_providers` that puts them together."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

from threadline.base.errors import ConfigurationError
from threadline.base.redact import Redactor, default_redactor
from threadline.services.agent.providers.settings import ProviderRegistry, ProviderSettings, Secret

OPENAI_URL: Final = "https://api.openai.com/v1"
ANTHROPIC_URL: Final = "https://api.anthropic.com"
GEMINI_URL: Final = "https://generativelanguage.googleapis.com/v1beta/openai/"
OPENROUTER_URL: Final = "https://openrouter.ai/api/v1"
OLLAMA_URL: Final = "http://localhost:11434"
DEV_MODELS: Final = ("threadline-dev",)


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _secret(env: Mapping[str, str], name: str | None) -> Secret | None:
    value = _env(env, name) if name else None
    return Secret(value) if value else None


def _with_suffix(url: str, suffix: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith(suffix) else url + suffix


def builtin_providers(env: Mapping[str, str]) -> dict[str, ProviderSettings]:
    """openai, anthropic, gemini, openrouter, ollama, dev and dev-anthropic."""
    openai_headers = {
        header: value
        for header, var in (
            ("OpenAI-Organization", "OPENAI_ORG_ID"),
            ("OpenAI-Project", "OPENAI_PROJECT_ID"),
        )
        if (value := _env(env, var))
    }
    router_headers = {
        header: value
        for header, var in (
            ("HTTP-Referer", "OPENROUTER_SITE_URL"),
            ("X-Title", "OPENROUTER_APP_NAME"),
        )
        if (value := _env(env, var))
    }
    ollama_url = _env(env, "OLLAMA_BASE_URL")
    dev_url = _env(env, "THREADLINE_DEVMODEL_URL")
    keyed = {
        "openai": (
            "OpenAI",
            OPENAI_URL,
            "OPENAI_API_KEY",
            ("gpt-4.1-mini", "gpt-4.1", "gpt-4o-mini", "gpt-4o", "o4-mini"),
        ),
        "anthropic": (
            "Anthropic",
            ANTHROPIC_URL,
            "ANTHROPIC_API_KEY",
            ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"),
        ),
        "gemini": (
            "Gemini",
            GEMINI_URL,
            "GEMINI_API_KEY",
            ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"),
        ),
        "openrouter": (
            "OpenRouter",
            OPENROUTER_URL,
            "OPENROUTER_API_KEY",
            ("openai/gpt-4.1-mini", "anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash"),
        ),
    }
    out: dict[str, ProviderSettings] = {}
    for name, (label, url, key_env, models) in keyed.items():
        key = _secret(env, key_env)
        out[name] = ProviderSettings(
            name=name,
            api="anthropic" if name == "anthropic" else "openai",
            base_url=url,
            api_key=key,
            headers=openai_headers
            if name == "openai"
            else router_headers
            if name == "openrouter"
            else {},
            models=models,
            default_model=models[0],
            label=label,
            key_env=key_env,
            max_tokens_param="max_completion_tokens" if name == "openai" else "max_tokens",
            configured=key is not None,
        )
    out["ollama"] = ProviderSettings(
        name="ollama",
        api="openai",
        base_url=_with_suffix(ollama_url or OLLAMA_URL, "/v1"),
        api_key=_secret(env, "OLLAMA_API_KEY"),
        models=("llama3.2", "qwen3", "mistral"),
        default_model="llama3.2",
        label="Ollama",
        key_env="OLLAMA_API_KEY",
        key_required=False,
        configured=ollama_url is not None,
    )
    dev_urls: tuple[tuple[str, str, str | None], ...] = (
        ("dev", "openai", _with_suffix(dev_url, "/v1") if dev_url else None),
        ("dev-anthropic", "anthropic", dev_url.rstrip("/") if dev_url else None),
    )
    for dev_name, dev_api, dev_base in dev_urls:
        out[dev_name] = ProviderSettings(
            name=dev_name,
            api="openai" if dev_api == "openai" else "anthropic",
            base_url=dev_base,
            models=DEV_MODELS,
            default_model=DEV_MODELS[0],
            label="Threadline dev model",
            key_required=False,
            configured=dev_url is not None,
        )
    return out


# ------------------------------------------------------------------------ config file


def _fail(provider: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"config: provider {provider!r}: {message}")


def _is_pos(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _is_str_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _is_models(value: object) -> bool:
    return isinstance(value, list | tuple) and all(_is_text(m) for m in value)


def _is_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _same(value: Any) -> Any:
    return value


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_windows(value: object) -> bool:
    """``context_tokens``: a number of tokens, or a table of model name -> tokens."""
    if isinstance(value, Mapping):
        return all(_is_text(k) and _is_count(v) for k, v in value.items())
    return _is_count(value)


def _windows(value: Any) -> dict[str, int]:
    return dict(value) if isinstance(value, Mapping) else {"*": value}


_Rule = tuple[Callable[[object], bool], str, Callable[[Any], Any]]
_SECONDS: Final[_Rule] = (_is_pos, "a positive number of seconds", float)
_TEXT: Final[_Rule] = (_is_text, "a non-empty string", _same)

#: config key -> (check, what it must be, conversion)
_RULES: Final[dict[str, _Rule]] = {
    "api": (lambda v: v in ("openai", "anthropic"), '"openai" or "anthropic"', _same),
    "label": _TEXT,
    "base_url": (_is_url, "an http(s) URL", _same),
    "key_env": _TEXT,
    "key_required": (lambda v: isinstance(v, bool), "true or false", _same),
    "headers": (_is_str_map, "a table of strings", dict),
    "headers_env": (_is_str_map, "a table of environment variable names", dict),
    "models": (_is_models, "a list of model names", tuple),
    "default_model": _TEXT,
    "max_tokens": (lambda v: _is_pos(v) and isinstance(v, int), "a positive integer", _same),
    "max_tokens_param": (
        lambda v: v in ("max_tokens", "max_completion_tokens"),
        '"max_tokens" or "max_completion_tokens"',
        _same,
    ),
    "temperature": (lambda v: _is_pos(v) or v == 0, "a number >= 0", float),
    "timeout_s": _SECONDS,
    "connect_timeout_s": _SECONDS,
    "context_tokens": (
        _is_windows,
        "a positive integer, or a table of model name = positive integer",
        _windows,
    ),
}


def _parse_entry(name: str, entry: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Validated ProviderSettings fields from one ``[providers.<name>]`` table."""
    if "api_key" in entry:
        raise _fail(
            name,
            "api_key is not accepted in a config file; put the key in an "
            "environment variable and name that variable with key_env",
        )
    unknown = sorted(set(entry) - set(_RULES))
    if unknown:
        raise _fail(name, f"unknown keys {unknown}; allowed: {sorted(_RULES)}")
    fields: dict[str, Any] = {}
    for key, value in entry.items():
        check, want, convert = _RULES[key]
        if not check(value):
            raise _fail(name, f"{key} must be {want}, not {value!r}")
        fields[key] = convert(value)
    headers_env: dict[str, str] = fields.pop("headers_env", {})
    for header, var in headers_env.items():
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
    if (
        "models" in fields
        and "default_model" not in fields
        and base.default_model not in fields["models"]
    ):
        fields["default_model"] = fields["models"][0] if fields["models"] else ""
    merged = dataclasses.replace(base, **fields)
    has_key = merged.api_key is not None
    configured = has_key or (
        not merged.key_required and (merged.configured or "base_url" in fields)
    )
    return dataclasses.replace(merged, configured=configured)


def apply_config(
    providers: dict[str, ProviderSettings], env: Mapping[str, str], config: Mapping[str, Any]
) -> str | None:
    """Overlay the ``[providers]`` table on ``providers`` (in place).

    ``config`` maps provider names to tables; its ``default`` key, if any, names the
    default provider, which is returned.
    """
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
    return default


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
    providers = builtin_providers(env)
    default = apply_config(providers, env, config or {})
    registry = ProviderRegistry(providers, default=default)
    (redactor if redactor is not None else default_redactor()).add(*registry.secrets())
    return registry
