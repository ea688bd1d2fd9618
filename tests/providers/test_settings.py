from __future__ import annotations

import msgspec
import pytest

from threadline.base.errors import ConfigurationError
from threadline.base.redact import Redactor
from threadline.services.agent.providers import (
    ProviderSettings,
    Secret,
    adapter_for,
    load_providers,
)
from threadline.services.agent.providers.sdk_adapter import client_options

ENV = {
    "OPENAI_API_KEY": "sk-openai-AAAA1111",
    "OPENAI_ORG_ID": "org-1",
    "OPENROUTER_API_KEY": "sk-or-v1-BBBB2222",
    "OPENROUTER_SITE_URL": "https://example.org",
    "OPENROUTER_APP_NAME": "Threadline",
    "THREADLINE_DEVMODEL_URL": "http://127.0.0.1:9999/",
}


def test_secret_never_shows_its_value() -> None:
    secret = Secret("hunter2-hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2-hunter2"
    assert secret == Secret("hunter2-hunter2")
    settings = ProviderSettings(name="x", api="openai", base_url="http://x", api_key=secret)
    assert "hunter2" not in repr(settings)
    with pytest.raises(ValueError):
        Secret("")


def test_builtins_from_env() -> None:
    registry = load_providers(ENV, redactor=Redactor())
    assert set(registry.names()) >= {
        "openai",
        "anthropic",
        "gemini",
        "openrouter",
        "ollama",
        "dev",
        "dev-anthropic",
    }
    openai = registry.get("openai")
    assert openai.api == "openai"
    assert openai.base_url == "https://api.openai.com/v1"
    assert openai.api_key == Secret("sk-openai-AAAA1111")
    assert openai.headers == {"OpenAI-Organization": "org-1"}
    assert openai.max_tokens == 4096 and client_options(openai, None)["max_retries"] == 0
    router = registry.get("openrouter")
    assert router.base_url == "https://openrouter.ai/api/v1"
    assert router.headers == {"HTTP-Referer": "https://example.org", "X-Title": "Threadline"}
    gemini = registry.settings("gemini")
    assert gemini.base_url == "https://generativelanguage.googleapis.com/v1beta/openai/"
    assert registry.get("ollama").base_url == "http://localhost:11434/v1"
    assert registry.get("dev").base_url == "http://127.0.0.1:9999/v1"
    dev_anthropic = registry.get("dev-anthropic")
    assert (dev_anthropic.api, dev_anthropic.base_url) == ("anthropic", "http://127.0.0.1:9999")


def test_missing_key_names_the_variable() -> None:
    registry = load_providers({}, redactor=Redactor())
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        registry.get("anthropic")
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        adapter_for(registry.settings("gemini"))
    with pytest.raises(ConfigurationError, match="unknown provider 'nope'"):
        registry.get("nope")


def test_default_follows_the_preference_order() -> None:
    assert load_providers(ENV, redactor=Redactor()).default().name == "openai"
    both = {**ENV, "ANTHROPIC_API_KEY": "sk-ant-CCCC3333"}
    assert load_providers(both, redactor=Redactor()).default().name == "anthropic"
    dev_only = {"THREADLINE_DEVMODEL_URL": "http://127.0.0.1:1"}
    assert load_providers(dev_only, redactor=Redactor()).default().name == "dev"
    ollama = {"OLLAMA_BASE_URL": "http://gpu:11434/v1/", **dev_only}
    registry = load_providers(ollama, redactor=Redactor())
    assert registry.default().name == "ollama"
    assert registry.get("ollama").base_url == "http://gpu:11434/v1"
    with pytest.raises(ConfigurationError, match="THREADLINE_DEVMODEL_URL|base URL"):
        load_providers({}, redactor=Redactor()).default()
    chosen = load_providers(ENV, {"default": "openrouter"}, redactor=Redactor())
    assert chosen.default().name == "openrouter"


def test_config_overrides_and_custom_providers() -> None:
    env = {**ENV, "LAB_KEY": "lab-secret-value", "LAB_TOKEN": "tok-abcdef"}
    config = {
        "openai": {"models": ["gpt-a", "gpt-b"], "timeout_s": 30, "max_tokens": 1000},
        "ollama": {"base_url": "http://box:11434/v1", "default_model": "qwen3"},
        "lab": {
            "base_url": "https://llm.lab.example/v1",
            "key_env": "LAB_KEY",
            "models": ["lab-1"],
            "headers": {"X-Team": "a"},
            "headers_env": {"X-Token": "LAB_TOKEN"},
            "connect_timeout_s": 2.5,
            "transport": "httpx",
        },
    }
    redactor = Redactor()
    registry = load_providers(env, config, redactor=redactor)
    openai = registry.get("openai")
    assert (openai.models, openai.default_model) == (("gpt-a", "gpt-b"), "gpt-a")
    assert (openai.timeout_s, openai.max_tokens) == (30.0, 1000)
    ollama = registry.get("ollama")
    assert (ollama.base_url, ollama.default_model, ollama.configured) == (
        "http://box:11434/v1",
        "qwen3",
        True,
    )
    lab = registry.get("lab")
    assert lab.api == "openai" and lab.api_key == Secret("lab-secret-value")
    assert lab.headers == {"X-Team": "a", "X-Token": "tok-abcdef"}
    assert (lab.connect_timeout_s, lab.transport, openai.transport) == (2.5, "httpx", "aiohttp")
    assert "lab-secret-value" in redactor and "tok-abcdef" in redactor
    assert "sk-openai-AAAA1111" in redactor
    assert "a" not in redactor


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"openai": {"api_key": "sk-x"}}, "api_key is not accepted"),
        ({"openai": {"model": "x"}}, "unknown field `model`.*allowed keys: api"),
        ({"openai": {"timeout_s": -1}}, "> 0.0 - at `..timeout_s`"),
        ({"openai": {"api": "anthropic"}}, "cannot change"),
        ({"openai": {"transport": "curl"}}, "transport"),
        ({"lab": {"models": ["x"]}}, "needs base_url"),
        ({"lab": {"base_url": "ftp://x"}}, "http"),
        ({"lab": {"base_url": "http://x", "headers_env": {"A": "NOPE"}}}, "NOPE"),
        ({"default": "nope"}, "default provider 'nope'"),
        ({"default": 3}, "must be a provider name"),
        ({"extra": 1}, "must be a table"),
    ],
)
def test_bad_config_is_refused(config: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        load_providers(ENV, config, redactor=Redactor())


def test_custom_provider_without_key_env_needs_no_key() -> None:
    config = {"local": {"base_url": "http://127.0.0.1:8000/v1", "models": ["m"]}}
    registry = load_providers({}, config, redactor=Redactor())
    local = registry.get("local")
    assert (local.key_required, local.configured, local.default_model) == (False, True, "m")


def test_describe_is_public_information_only() -> None:
    registry = load_providers(ENV, redactor=Redactor())
    info = {p.name: p for p in registry.describe()}
    assert info["openai"].configured and not info["anthropic"].configured
    assert info["dev"].configured and not info["ollama"].configured
    assert info["openai"].label == "OpenAI"
    dumped = msgspec.json.encode(registry.describe()).decode()
    for secret in ("sk-openai-AAAA1111", "sk-or-v1-BBBB2222", "org-1", "api.openai.com"):
        assert secret not in dumped


def test_keys_are_registered_with_the_default_redactor() -> None:
    from threadline.base.redact import default_redactor

    load_providers({"GEMINI_API_KEY": "AIzaFAKEFAKEFAKE-registered"})
    assert "AIzaFAKEFAKEFAKE-registered" in default_redactor()
