"""One live MCP session per server, owned by a background task.

The mcp library's transports and sessions are built on anyio task groups, which must
be entered and exited by the same task, and whose failures cancel the task hosting
them. So each session lives in its own runner task: a dead server (a crashed stdio
process, a refused HTTP connection) ends that runner, never the caller's task. Callers
use the session from their own tasks; requests are correlated by the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client import Transport
from mcp.client.streamable_http import MCP_SESSION_ID, streamable_http_client
from mcp.shared.message import SessionMessage
from mcp.types import Implementation, Tool

from threadline.services.agent.tools.config import (
    META_REQUEST,
    McpServerConfig,
    ToolServerUnavailable,
)
from threadline.services.agent.tools.content import describe_exception, redact

logger = logging.getLogger(__name__)

CLIENT_INFO = Implementation(name="threadline", version="0.1.0")
#: A single server-sent event may carry a whole (large) tool result.
MAX_SSE_EVENT_BYTES = 32 * 1024 * 1024
#: Lower bound of the HTTP read timeout (our own call timeouts come first).
_HTTP_READ_TIMEOUT_S = 300.0
_MAX_LIST_PAGES = 20
#: A stdio server's stderr: lines logged at most this long; how long to wait for its end.
_STDERR_LINE_CHARS = 2000
_STDERR_DRAIN_S = 1.0


@asynccontextmanager
async def _watched(transport: Transport, on_eof: Callable[[], None]) -> AsyncIterator[Any]:
    """The transport's streams; ``on_eof()`` once the server's side has ended (a stdio
    process exited, say), which the mcp library does not tell."""
    async with transport as (read_stream, write_stream), anyio.create_task_group() as tg:
        sender, receiver = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def forward() -> None:
            try:
                async with sender:
                    async for item in read_stream:
                        await sender.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the session closed its end
            finally:
                on_eof()

        tg.start_soon(forward)
        yield receiver, write_stream
        tg.cancel_scope.cancel()


@asynccontextmanager
async def _http_transport(config: McpServerConfig, conn: Connection) -> AsyncIterator[Any]:
    read_timeout = max(_HTTP_READ_TIMEOUT_S, config.call_timeout_s + 5)
    timeout = httpx2.Timeout(config.startup_timeout_s, read=read_timeout)

    async def check(response: httpx2.Response) -> None:
        # The MCP spec: a 404 to a message naming a session means the server no longer
        # knows it (it restarted, say), and did not take the message. Some servers
        # (server-everything) answer 400.
        request = response.request
        if response.status_code not in (400, 404) or MCP_SESSION_ID not in request.headers:
            return
        if request.method == "POST":
            conn.session_lost.set()
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                conn.rejected.add(json.loads(request.content)["params"]["_meta"][META_REQUEST])

    # The configured headers are sent as configured; nothing of the end user's is added.
    async with (
        httpx2.AsyncClient(
            headers=dict(config.headers), timeout=timeout, event_hooks={"response": [check]}
        ) as http,
        streamable_http_client(
            config.url, http_client=http, max_sse_event_size=MAX_SSE_EVENT_BYTES
        ) as streams,
    ):
        yield streams


@asynccontextmanager
async def _stderr_logged(config: McpServerConfig) -> AsyncIterator[Any]:
    """A pipe for a stdio server's stderr: each line is logged (redacted of every header
    and env value) by our logger, in our log format, instead of landing on our stderr."""
    read_fd, write_fd = os.pipe()
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb")
    )

    async def pump() -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line beyond the reader's limit: skipped
                continue
            if not line:
                return
            text = redact(line.decode(errors="replace").rstrip(), config.secrets())
            if text:
                logger.info("MCP server %r: %s", config.name, text[:_STDERR_LINE_CHARS])

    task = asyncio.create_task(pump(), name=f"mcp-stderr:{config.name}")
    try:
        with os.fdopen(write_fd, "w") as errlog:
            yield errlog
    finally:
        # the server has stopped; a process it left behind may keep the pipe open
        await asyncio.wait({task}, timeout=_STDERR_DRAIN_S)
        task.cancel()
        transport.close()


class Connection:
    """A session with one MCP server, kept open until :meth:`close`."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self._client: Client | None = None
        self._failure = ""
        self._eof = asyncio.Event()
        #: set when the HTTP server answered that it does not know this session (any more)
        self.session_lost = asyncio.Event()
        #: the ``META_REQUEST`` tags of the requests it refused for that reason
        self.rejected: set[str] = set()
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._client is not None and not self._eof.is_set() and not self._stop.is_set()

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ToolServerUnavailable(self.config.name, self._failure or "not connected")
        return self._client

    @property
    def finished(self) -> bool:
        return self._task is None or self._task.done()

    async def list_all_tools(self) -> list[Tool]:
        """Every tool the server lists, following pagination (bounded), within the call
        timeout."""
        tools: list[Tool] = []
        cursor: str | None = None
        async with asyncio.timeout(self.config.call_timeout_s):
            for _ in range(_MAX_LIST_PAGES):
                page = await self.client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
        return tools

    async def start(self) -> None:
        """Connect and negotiate, within the server's startup timeout.

        Raises:
            ToolServerUnavailable: the server did not start, refused, or timed out.
        """
        self._task = asyncio.create_task(self._run(), name=f"mcp-server:{self.config.name}")
        timeout = self.config.startup_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            self.close()
            raise ToolServerUnavailable(
                self.config.name, f"no answer within {timeout:g}s of starting"
            ) from None
        except asyncio.CancelledError:
            self.close()
            raise
        if self._client is None:
            raise ToolServerUnavailable(self.config.name, self._failure or "connection closed")

    def close(self) -> None:
        """Ask the runner to end the session; :meth:`wait_closed` waits for it."""
        self._stop.set()
        if self._task is not None and not self._ready.is_set():
            self._task.cancel()  # still starting: nothing to wind down gracefully

    async def wait_closed(self, grace_s: float) -> None:
        """Close, and wait up to ``grace_s`` for the runner (then cancel it)."""
        if self._task is None:
            return
        self.close()
        _, pending = await asyncio.wait({self._task}, timeout=grace_s)
        if pending:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=grace_s)

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        config = self.config
        if config.transport == "http":
            async with _watched(_http_transport(config, self), self._eof.set) as streams:
                yield streams
            return
        params = StdioServerParameters(
            command=config.command[0], args=list(config.command[1:]), env=dict(config.env)
        )
        async with (
            _stderr_logged(config) as errlog,
            _watched(stdio_client(params, errlog=errlog), self._eof.set) as streams,
        ):
            yield streams

    async def _run(self) -> None:
        try:
            async with Client(self._transport(), cache=None, client_info=CLIENT_INFO) as client:
                self._client = client
                self._ready.set()
                await self._stop.wait()
        except asyncio.CancelledError:
            self._failure = self._failure or "connection attempt cancelled"
            raise
        except Exception as exc:
            reason = describe_exception(exc, self.config.secrets())
            if self._ready.is_set():
                logger.warning("MCP server %r: session ended: %s", self.config.name, reason)
            self._failure = reason
        finally:
            self._client = None
            self._ready.set()
