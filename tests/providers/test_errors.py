from __future__ import annotations

import email.utils

import pytest

from threadline.base.redact import Redactor
from threadline.services.agent.providers import (
    ProviderError,
    ProviderSettings,
)
from threadline.services.agent.providers.errors import (
    ErrorContext,
    parse_retry_after,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"retry-after": "tomorrow-ish"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def context(**overrides: object) -> ErrorContext:
    fields: dict[str, object] = {
        "name": "openai",
        "api": "openai",
        "base_url": "https://user:pw@api.example.com/v1?key=AIzaSECRETSECRETSECRET00",
        "label": "OpenAI",
        "key_env": "OPENAI_API_KEY",
        **overrides,
    }
    return ErrorContext(ProviderSettings(**fields), "gpt-x", Redactor())  # type: ignore[arg-type]


def test_messages_say_who_and_what_to_do() -> None:
    ctx = context()
    assert ctx.host == "api.example.com"
    err = ctx.http(401, "Incorrect API key provided: sk-abc123456789")
    assert err.kind == "auth" and err.status == 401 and not err.retryable
    assert err.message.startswith("the OpenAI key was rejected: check OPENAI_API_KEY")
    assert "sk-abc123456789" not in err.message
    limited = ctx.http(429, "slow down", headers={"retry-after": "2"})
    assert limited.message == "rate limited by openai; retry after 2.0 s"
    assert (limited.retryable, limited.retry_after_s) == (True, 2.0)
    quota = ctx.http(429, "You exceeded your current quota", code="insufficient_quota")
    assert (quota.kind, quota.retryable) == ("rate_limit", False)
    in_stream = ctx.http(500, "boom", in_stream=True)
    assert (in_stream.kind, in_stream.status, in_stream.retryable) == ("provider_error", None, True)
    not_retryable = ctx.http(400, "bad", headers={"retry-after": "5"})
    assert not_retryable.retry_after_s is None
    assert ctx.timeout(connect=True).message.startswith("could not connect to OpenAI")
    assert isinstance(ctx.ended_early(), ProviderError)


def test_tools_unsupported_wording_variants() -> None:
    ctx = context(name="ollama", label="Ollama")
    for detail in (
        "registry.ollama.ai/library/gemma:2b does not support tools",
        "tool use is not supported for this model",
    ):
        err = ctx.http(400, detail)
        assert (err.kind, err.tools_unsupported) == ("bad_request", True)
    assert not ctx.http(400, "bad temperature").tools_unsupported


@pytest.mark.parametrize(
    "detail",
    [
        "Connect call failed ('10.1.2.3', 8443)",
        "cannot reach https://llm.internal.example:8443/v1/chat/completions",
        "upstream [fd00::12]:11434 reset",
        "gateway llm-proxy.corp.example:8080 timed out",
        "no route to 192.168.7.20",
    ],
)
def test_no_message_shows_a_network_address(detail: str) -> None:
    """Issue 12 #4: users see the provider's name, never the deployment's network."""
    ctx = context()
    for err in (ctx.network(detail, mid_stream=False), ctx.http(502, detail)):
        assert "OpenAI" in err.message and "(address)" in err.message
        assert not any(part in err.message for part in ("10.1", "8443", "fd00", "8080", "192."))
