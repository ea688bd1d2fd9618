from __future__ import annotations

import logging

import pytest

from threadline.base.redact import REDACTED, Redactor, default_redactor, redact, register_secret


def test_registered_secrets_are_removed_literally() -> None:
    tricky = "a.b*c+d?"  # 8 characters full of regex metacharacters
    redactor = Redactor([tricky, "p4$$(w0rd)"])
    text = f"key {tricky} and p4$$(w0rd) but not aXb*c+d? nor abc"
    assert redactor.redact(text) == f"key {REDACTED} and {REDACTED} but not aXb*c+d? nor abc"


def test_longest_secret_wins_and_short_values_are_ignored() -> None:
    redactor = Redactor(["abcdef", "abcdefghij", "abc", ""])
    assert redactor.redact("abcdefghij abcdef abc") == f"{REDACTED} {REDACTED} abc"
    assert len(redactor) == 2
    assert "abcdef" not in repr(redactor)


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        ("headers={'Authorization': 'Bearer tok_123456'}", "tok_123456"),
        ("x-api-key: anthropic-style-value-1", "anthropic-style-value-1"),
        ('{"x-goog-api-key": "goog-value-99"}', "goog-value-99"),
        ("sent bearer abc.def-ghi to server", "abc.def-ghi"),
        ("GET https://h/v1/models?key=AIzaSomething&alt=sse", "AIzaSomething"),
        ("https://h/x?api_key=raw-key-1&token=raw-token-2", "raw-"),
        ("ApiKey(api_key='plain-key-3')", "plain-key-3"),
        ("Incorrect API key provided: sk-proj-abc123********wxyz", "sk-proj-abc123"),
        ("key sk-ant-api03-AbCdEfGhIjKlMn_op", "AbCdEfGhIjKlMn"),
        ("sk-or-v1-0123456789abcdef", "0123456789abcdef"),
        ("gemini AIzaSyA1234567890abcdefghijklmnopqrstu", "AIzaSyA1234567890"),
        ("hf_abcdefghijklmnopqrstuv in logs", "hf_abcdefghijklmnop"),
    ],
)
def test_patterns(text: str, leak: str) -> None:
    out = Redactor().redact(text)
    assert leak not in out, out
    assert REDACTED in out


def test_ordinary_text_is_left_alone() -> None:
    text = "monkey=3 sort_key=name the token count is 12; skip-this is fine"
    assert Redactor().redact(text) == text


def test_log_filter_redacts_message_args_and_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    redactor = Redactor(["zz-top-secret-zz"])
    caplog.handler.addFilter(redactor.log_filter())
    logger = logging.getLogger("threadline.test.redact")
    try:
        with caplog.at_level(logging.INFO, logger="threadline.test.redact"):
            logger.info("calling with %s and %r", "zz-top-secret-zz", {"auth": "Bearer qqqqqqqq"})
            try:
                raise RuntimeError("failed with zz-top-secret-zz")
            except RuntimeError:
                logger.exception("boom %s", "sk-test-SECRET123")
    finally:
        caplog.handler.filters.clear()
    assert "zz-top-secret-zz" not in caplog.text
    assert "qqqqqqqq" not in caplog.text
    assert "SECRET123" not in caplog.text
    assert "RuntimeError" in caplog.text
    assert caplog.records[0].getMessage().startswith("calling with [REDACTED]")


def test_default_instance() -> None:
    register_secret("global-secret-42", None)
    assert "global-secret-42" in default_redactor()
    assert redact("x global-secret-42 y") == f"x {REDACTED} y"
