"""The bundled server run in-process over HTTP, to observe what reaches the server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.types import Receive, Scope, Send

from threadline.services.agent.tools import (
    META_OWNER,
    META_SESSION,
    META_TURN,
    McpServerConfig,
    ToolContext,
    ToolRegistry,
)
from threadline.services.mcpserver import build_server


@dataclass
class Observed:
    url: str = ""
    headers: list[dict[str, str]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


def _add_probe_tools(server: MCPServer, observed: Observed) -> None:
    def whoami(ctx: Context) -> str:
        """The Threadline keys of this request's _meta."""
        meta = ctx.request_context.meta or {}
        return json.dumps({key: meta.get(key) for key in (META_OWNER, META_SESSION, META_TURN)})

    async def wait_forever() -> str:
        """Block until cancelled."""
        observed.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            observed.cancelled.set()
        return "unreachable"

    server.add_tool(whoami, structured_output=False)
    server.add_tool(wait_forever, structured_output=False)


@asynccontextmanager
async def serve_in_process() -> AsyncIterator[Observed]:
    observed = Observed()
    server = build_server()
    _add_probe_tools(server, observed)
    app = server.streamable_http_app(host="127.0.0.1")

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            observed.headers.append(headers)
        await app(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    observed.url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    http = uvicorn.Server(uvicorn.Config(recording, log_level="warning", lifespan="on"))
    task = asyncio.create_task(http.serve(sockets=[sock]))
    try:
        yield observed
    finally:
        http.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def observed() -> AsyncIterator[Observed]:
    async with serve_in_process() as observed:
        yield observed


async def test_security_context_travels_in_meta_and_headers_as_configured(
    observed: Observed, make_context: Callable[..., ToolContext]
) -> None:
    context = make_context(owner="alice@example.com")
    headers = {"X-Api-Key": "server-key-1", "Authorization": "Bearer for-the-server"}
    config = McpServerConfig(name="demo", transport="http", url=observed.url, headers=headers)
    async with ToolRegistry([config]) as registry:
        outcome = await registry.call("demo__whoami", {}, context=context)
    assert json.loads(outcome.content) == {
        META_OWNER: "alice@example.com",
        META_SESSION: context.session_id,
        META_TURN: "turn-1",
    }
    assert observed.headers
    for seen in observed.headers:
        assert seen["x-api-key"] == "server-key-1"
        assert seen["authorization"] == "Bearer for-the-server"


async def test_no_authorization_header_unless_configured(
    observed: Observed, context: ToolContext
) -> None:
    config = McpServerConfig(name="demo", transport="http", url=observed.url)
    async with ToolRegistry([config]) as registry:
        await registry.call("demo__echo", {"text": "x"}, context=context)
    assert observed.headers
    assert all("authorization" not in seen for seen in observed.headers)


async def test_cancelling_a_call_cancels_the_tool_on_the_server(
    observed: Observed, context: ToolContext
) -> None:
    config = McpServerConfig(name="demo", transport="http", url=observed.url)
    async with ToolRegistry([config]) as registry:
        task = asyncio.create_task(registry.call("demo__wait_forever", {}, context=context))
        await observed.started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(observed.cancelled.wait(), timeout=5)
        after = await registry.call("demo__echo", {"text": "usable"}, context=context)
    assert (after.is_error, after.content) == (False, "usable")


async def test_timeout_cancels_the_tool_on_the_server(
    observed: Observed, context: ToolContext
) -> None:
    config = McpServerConfig(name="demo", transport="http", url=observed.url, call_timeout_s=0.3)
    async with ToolRegistry([config]) as registry:
        outcome = await registry.call("demo__wait_forever", {}, context=context)
        await asyncio.wait_for(observed.cancelled.wait(), timeout=5)
    assert outcome.is_error
    assert "did not answer within 0.3s" in outcome.content
