"""Fixtures: the bundled MCP server over stdio (spawned per registry) and over HTTP."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from threadline.services.agent.tools import McpServerConfig, ToolContext
from threadline.services.mcpserver.main import READY_PREFIX

SERVER_MODULE = [sys.executable, "-m", "threadline.services.mcpserver"]
STDIO_COMMAND = [*SERVER_MODULE, "--transport", "stdio"]
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class HttpServer:
    url: str
    port: int
    process: asyncio.subprocess.Process


@asynccontextmanager
async def run_http_server(*args: str, port: int = 0) -> AsyncIterator[HttpServer]:
    """Start the bundled server over HTTP; ready once it prints its readiness line."""
    process = await asyncio.create_subprocess_exec(
        *SERVER_MODULE,
        "--transport",
        "http",
        "--port",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT_S)
        text = line.decode().strip()
        assert text.startswith(READY_PREFIX), f"unexpected first line: {text!r}"
        url = text.removeprefix(READY_PREFIX)
        yield HttpServer(url=url, port=int(url.rsplit(":", 1)[1].split("/")[0]), process=process)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


HttpServerFactory = Callable[..., AbstractAsyncContextManager[HttpServer]]


@pytest.fixture
def http_server() -> HttpServerFactory:
    return run_http_server


@pytest.fixture(scope="module")
async def shared_http_url() -> AsyncIterator[str]:
    """One HTTP server for a module's tests (they use distinct owners)."""
    async with run_http_server() as server:
        yield server.url


def stdio_config(name: str = "demo", *, args: tuple[str, ...] = (), **kw: Any) -> McpServerConfig:
    return McpServerConfig(name=name, transport="stdio", command=[*STDIO_COMMAND, *args], **kw)


def http_config(url: str, name: str = "demo", **kw: Any) -> McpServerConfig:
    return McpServerConfig(name=name, transport="http", url=url, **kw)


@pytest.fixture(params=["stdio", "http"])
def make_config(
    request: pytest.FixtureRequest, shared_http_url: str
) -> Callable[..., McpServerConfig]:
    """Builds a config for the bundled server over the parametrized transport."""
    if request.param == "stdio":
        return stdio_config
    return lambda name="demo", **kw: http_config(shared_http_url, name, **kw)


def make_context(owner: str | None = None, allowed: tuple[str, ...] = ("demo",)) -> ToolContext:
    return ToolContext(
        session_id=f"ses-{uuid.uuid4().hex[:8]}",
        owner=f"user-{uuid.uuid4().hex[:8]}" if owner is None else owner,
        turn_id="turn-1",
        allowed_servers=allowed,
    )


@pytest.fixture
def context() -> ToolContext:
    return make_context()


@pytest.fixture(name="stdio_config")
def _stdio_config() -> Callable[..., McpServerConfig]:
    return stdio_config


@pytest.fixture(name="http_config")
def _http_config() -> Callable[..., McpServerConfig]:
    return http_config


@pytest.fixture(name="make_context")
def _make_context() -> Callable[..., ToolContext]:
    return make_context
