"""Pure pieces: configuration, result rendering, redaction, safe arithmetic."""

from __future__ import annotations

import base64
import json
from typing import Any

import mcp.types as types
import msgspec
import pytest

from threadline.base.errors import ConfigurationError
from threadline.base.text import one_line
from threadline.services.agent.tools import (
    InvalidToolConfig,
    McpServerConfig,
    ToolServerUnavailable,
    prefixed,
    split_prefixed,
)
from threadline.services.agent.tools.content import (
    SUMMARY_CHARS,
    describe_exception,
    redact,
    render_result,
    secret_forms,
    truncate,
)
from threadline.services.mcpserver.calc import CalcError, calculate, format_number

# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("name", ["demo", "my-server", "s3_tools", "a1"])
def test_valid_server_names(name: str) -> None:
    assert McpServerConfig(name=name, transport="stdio", command=["x"]).name == name


@pytest.mark.parametrize("name", ["", "Demo", "a b", "a__b", "a.b", "ü"])
def test_invalid_server_names(name: str) -> None:
    with pytest.raises(InvalidToolConfig):
        McpServerConfig(name=name, transport="stdio", command=["x"])


def test_transport_needs_its_fields() -> None:
    with pytest.raises(ConfigurationError):
        McpServerConfig(name="a", transport="stdio")
    with pytest.raises(ConfigurationError):
        McpServerConfig(name="a", transport="http", url="ftp://x")
    with pytest.raises(ConfigurationError):
        McpServerConfig(name="a", transport="http", url="http://x", call_timeout_s=0)


def test_config_decodes_from_plain_data() -> None:
    raw: dict[str, Any] = {
        "name": "search",
        "transport": "http",
        "url": "https://mcp.example.com/mcp",
        "headers": {"X-Api-Key": "k"},
        "allowed_tools": ["query"],
    }
    config = msgspec.convert(raw, McpServerConfig)
    assert config.allowed_tools == ("query",)
    assert config.secrets() == ("k",)
    stdio = McpServerConfig(
        name="a", transport="stdio", command=["x"], env={"API_KEY": "v1", "LOG_LEVEL": "debug"}
    )
    assert stdio.secrets() == ("v1", "debug")
    assert stdio.credentials() == ("v1",)
    with pytest.raises(msgspec.ValidationError, match="must match"):
        msgspec.convert({**raw, "name": "Bad"}, McpServerConfig)


def test_prefixing_round_trips() -> None:
    assert prefixed("notes", "add__item") == "notes__add__item"
    assert split_prefixed("notes__add__item") == ("notes", "add__item")
    for name in ("echo", "__echo", "notes__", ""):
        assert split_prefixed(name) is None


def test_unavailable_error_carries_its_reason() -> None:
    error = ToolServerUnavailable("demo", "down")
    assert (error.server, error.reason) == ("demo", "down")
    assert "demo" in str(error)


# ---------------------------------------------------------------------- rendering


def test_render_joins_text_and_summarises_other_blocks() -> None:
    png = base64.b64encode(b"\x89PNG" + bytes(1230)).decode()
    result = types.CallToolResult(
        content=[
            types.TextContent(text="first"),
            types.ImageContent(data=png, mime_type="image/png"),
            types.AudioContent(data=base64.b64encode(b"abc").decode(), mime_type="audio/wav"),
            types.ResourceLink(uri="file:///tmp/x.txt", name="x"),
            types.EmbeddedResource(
                resource=types.TextResourceContents(uri="mem://a", text="embedded")
            ),
            types.EmbeddedResource(
                resource=types.BlobResourceContents(uri="mem://b", blob=png, mime_type="image/png")
            ),
        ]
    )
    assert render_result(result).split("\n") == [
        "first",
        "[image: image/png, 1234 bytes]",
        "[audio: audio/wav, 3 bytes]",
        "[resource link: file:///tmp/x.txt]",
        "[resource: mem://a]",
        "embedded",
        "[resource: mem://b, image/png, 1234 bytes]",
    ]


def test_structured_content_is_json_unless_already_mirrored() -> None:
    data = {"temperature": 21.5, "unit": "C"}
    only_structured = types.CallToolResult(content=[], structured_content=data)
    mirrored = types.CallToolResult(
        content=[types.TextContent(text=json.dumps(data, indent=2))], structured_content=data
    )
    assert json.loads(render_result(only_structured)) == data
    assert render_result(mirrored) == json.dumps(data, indent=2)


def test_truncate_marks_what_was_cut() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("é" * 10, 5)  # 20 bytes; never splits a character
    assert cut.startswith("éé\n[truncated: the tool returned 20 bytes; only the first 5")


def test_summary_is_one_short_line() -> None:
    assert one_line("a\n\nb\tc", SUMMARY_CHARS) == "a b c"
    long = one_line("word " * 200, SUMMARY_CHARS)
    assert len(long) == 200
    assert long.endswith("…")


def test_redaction_removes_values_and_token_parts() -> None:
    secrets = ["Bearer abcdef123456", "envsecret", "ab", "multi\nline-secret"]
    text = (
        "header Bearer abcdef123456, token abcdef123456, env envsecret, ab stays, "
        "repr 'multi\\nline-secret'"
    )
    assert redact(text, secrets) == (
        "header [REDACTED], token [REDACTED], env [REDACTED], ab stays, repr '[REDACTED]'"
    )
    assert "Bearer" not in secret_forms(["Bearer abcdef123456"])


def test_describe_exception_unwraps_groups_and_redacts() -> None:
    group = ExceptionGroup("outer", [ValueError("bad key sekrit-value\nsecond line")])
    assert (
        describe_exception(group, ["sekrit-value"]) == "ValueError: bad key [REDACTED] second line"
    )
    assert describe_exception(TimeoutError(), []) == "TimeoutError"


# ----------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("7 / 2", "3.5"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2 ** 100", "1267650600228229401496703205376"),
        ("0.1 + 0.2", "0.30000000000000004"),
        ("-(3)", "-3"),
        ("6 / 3", "2"),
    ],
)
def test_calculate(expression: str, value: str) -> None:
    assert format_number(calculate(expression)) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "x + 1",
        "[1, 2]",
        "1 if 1 else 2",
        "True + 1",
        "'a' * 3",
        "1 / 0",
        "9 ** 9 ** 9",
        "10 ** 5000",
        "1 +",
        "1" * 201,
    ],
)
def test_calculate_refuses(expression: str) -> None:
    with pytest.raises(CalcError):
        calculate(expression)
