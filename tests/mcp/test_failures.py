"""Servers that are down, slow, crash mid-call, or calls that get cancelled."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.mcp.conftest import STDIO_COMMAND
from threadline.base.logs import JsonFormatter
from threadline.base.redact import default_redactor
from threadline.services.agent.tools import McpServerConfig, ToolContext, ToolRegistry

HttpServerFactory = Callable[..., Any]

ConfigFactory = Callable[..., McpServerConfig]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_servers_that_cannot_start_are_listed_as_unavailable(
    stdio_config: ConfigFactory, http_config: ConfigFactory
) -> None:
    servers = [
        stdio_config(),
        McpServerConfig(name="nocmd", transport="stdio", command=["/nonexistent/mcp-server"]),
        McpServerConfig(
            name="exits", transport="stdio", command=[sys.executable, "-c", "raise SystemExit(3)"]
        ),
        http_config(f"http://127.0.0.1:{_closed_port()}/mcp", name="closed"),
    ]
    async with ToolRegistry(servers) as registry:
        listing = await registry.list_tools(["nocmd", "demo", "exits", "closed", "unknown"])
    assert {spec.name.split("__")[0] for spec in listing.tools} == {"demo"}
    reasons = {u.server: u.reason for u in listing.unavailable}
    assert list(reasons) == ["nocmd", "exits", "closed", "unknown"]
    assert "FileNotFoundError" in reasons["nocmd"]
    assert reasons["unknown"] == "not configured"
    assert all(reason and "\n" not in reason for reason in reasons.values())


async def test_unavailable_server_call_is_an_error_outcome(
    http_config: ConfigFactory, make_context: Callable[..., ToolContext]
) -> None:
    config = http_config(f"http://127.0.0.1:{_closed_port()}/mcp")
    async with ToolRegistry([config]) as registry:
        outcome = await registry.call("demo__echo", {"text": "x"}, context=make_context())
    assert outcome.is_error
    assert outcome.content.startswith("tool server 'demo' is unavailable: ")


async def test_server_that_never_answers_times_out_at_startup() -> None:
    silent = McpServerConfig(
        name="silent",
        transport="stdio",
        command=[sys.executable, "-c", "import sys; sys.stdin.read()"],
        startup_timeout_s=0.5,
    )
    async with ToolRegistry([silent]) as registry:
        started = time.monotonic()
        listing = await registry.list_tools(["silent"])
        elapsed = time.monotonic() - started
    assert listing.tools == ()
    assert [u.reason for u in listing.unavailable] == ["no answer within 0.5s of starting"]
    assert elapsed < 10  # the server never answers: only the startup timeout ends the wait


async def test_secrets_never_appear_in_reasons(
    http_config: ConfigFactory, shared_http_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = http_config(
        f"http://127.0.0.1:{_closed_port()}/mcp",
        headers={"Authorization": "Bearer tok-SUPERSECRET-123"},
    )
    # httpx refuses this value and quotes it in its error message.
    bad_header = http_config(
        shared_http_url, name="badheader", headers={"X-Key": "SUPERSECRET\nmore-secret"}
    )
    async with ToolRegistry([config, bad_header]) as registry:
        listing = await registry.list_tools(["demo", "badheader"])
    reasons = {u.server: u.reason for u in listing.unavailable}
    assert "Illegal header value" in reasons["badheader"]
    for text in [*reasons.values(), caplog.text]:
        assert "SUPERSECRET" not in text
        assert "more-secret" not in text


async def test_timeout_is_an_error_and_the_session_stays_usable(
    make_config: ConfigFactory, context: ToolContext
) -> None:
    async with ToolRegistry([make_config(call_timeout_s=0.5)]) as registry:
        await registry.list_tools(["demo"])
        started = time.monotonic()
        outcome = await registry.call("demo__sleep", {"seconds": 60}, context=context)
        elapsed = time.monotonic() - started
        after = await registry.call("demo__echo", {"text": "still here"}, context=context)
    assert outcome.is_error
    assert outcome.content == "the tool did not answer within 0.5s and was cancelled"
    assert 0.4 < elapsed < 10  # cancelled at the timeout, not after the 60 s sleep
    assert (after.is_error, after.content) == (False, "still here")


async def test_cancelling_a_call_returns_promptly(
    make_config: ConfigFactory, context: ToolContext
) -> None:
    async with ToolRegistry([make_config()]) as registry:
        await registry.list_tools(["demo"])
        task = asyncio.create_task(registry.call("demo__sleep", {"seconds": 60}, context=context))
        # The call is in flight on the server for as long as this wait lasts.
        done, _ = await asyncio.wait({task}, timeout=0.5)
        assert not done
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1
        after = await registry.call("demo__echo", {"text": "next"}, context=context)
    assert (after.is_error, after.content) == (False, "next")


async def test_stdio_crash_mid_call_then_reconnect(
    stdio_config: ConfigFactory, context: ToolContext
) -> None:
    async with ToolRegistry([stdio_config()]) as registry:
        await registry.call("demo__notes_add", {"text": "before"}, context=context)
        crashed = await registry.call("demo__crash", {}, context=context)
        again = await registry.call("demo__echo", {"text": "again"}, context=context)
        notes = await registry.call("demo__notes_list", {}, context=context)
    assert crashed.is_error
    assert crashed.content == (
        "tool server 'demo' disconnected during the call; whether the tool ran is unknown"
    )
    assert (again.is_error, again.content) == (False, "again")
    assert notes.content == "No notes yet."  # a fresh process: it reconnected


async def test_http_crash_mid_call_then_reconnect(
    http_server: HttpServerFactory, http_config: ConfigFactory, context: ToolContext
) -> None:
    async with http_server() as first:
        config = http_config(first.url, call_timeout_s=10)
        async with ToolRegistry([config]) as registry:
            crashed = await registry.call("demo__crash", {}, context=context)
            await first.process.wait()
            down = await registry.call("demo__echo", {"text": "x"}, context=context)
            async with http_server(port=first.port):
                again = await registry.call("demo__echo", {"text": "again"}, context=context)
    assert crashed.is_error
    assert "disconnected during the call" in crashed.content
    assert down.is_error
    assert (again.is_error, again.content) == (False, "again")


async def test_stdio_server_stderr_goes_through_the_redacting_json_log(
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret = "ENVSECRET-4711-abcdef"
    script = (
        "import os, sys; print('upstream key is', os.environ['UPSTREAM_API_KEY'],"
        " file=sys.stderr, flush=True);"
        " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    config = McpServerConfig(
        name="talky",
        transport="stdio",
        command=[sys.executable, "-c", script, *STDIO_COMMAND[1:]],
        env={"UPSTREAM_API_KEY": secret},
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(default_redactor().log_filter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        async with ToolRegistry([config]) as registry:
            listing = await registry.list_tools(["talky"])
    finally:
        root.removeHandler(handler)
    assert listing.tools
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    said = [line for line in lines if "upstream key is" in line["msg"]]
    assert [line["msg"] for line in said] == ["MCP server 'talky': upstream key is [REDACTED]"]
    assert said[0]["logger"] == "threadline.services.agent.tools.connection"
    assert secret not in stream.getvalue() + "".join(capfd.readouterr())
