"""The agent's view of its MCP servers: lazy connections, cached listings, guarded calls.

Every error of the mcp library is translated here, once: listing failures become
"unavailable" entries, call failures become ``is_error`` outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar, cast

from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult, RequestParamsMeta, Tool

from threadline.base.errors import ConfigurationError
from threadline.base.redact import register_secret
from threadline.base.text import one_line
from threadline.events.conversation import ToolSpec
from threadline.services.agent.tools.config import (
    McpServerConfig,
    ToolContext,
    ToolListing,
    ToolOutcome,
    ToolServerUnavailable,
    UnavailableServer,
    prefixed,
    split_prefixed,
)
from threadline.services.agent.tools.connection import Connection
from threadline.services.agent.tools.content import (
    DEFAULT_MAX_RESULT_BYTES,
    SUMMARY_CHARS,
    describe_exception,
    redact,
    render_result,
    secret_forms,
    truncate,
)

logger = logging.getLogger(__name__)

#: Function names every provider accepts (OpenAI's rule is the strictest).
_PROVIDER_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CLOSE_TIMEOUT_S = 10.0
NOT_ALLOWED = "tool not allowed"
T = TypeVar("T")
#: Told of a running call's progress: progress so far, the total (if known), a message.
Progress = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Listing:
    expires: float
    specs: tuple[ToolSpec, ...]


class ToolRegistry:
    """Connects lazily to the configured MCP servers and keeps their sessions for reuse.

    Use as an async context manager; leaving it closes every session (and stops
    every stdio server process it started).
    """

    def __init__(
        self,
        servers: Sequence[McpServerConfig],
        *,
        listing_ttl_s: float = 60.0,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        progress_interval_s: float = 1.0,
    ) -> None:
        self._configs: dict[str, McpServerConfig] = {}
        for config in servers:
            if config.name in self._configs:
                raise ConfigurationError(f"MCP server {config.name!r} is configured twice")
            self._configs[config.name] = config
            # Log handlers with the redacting filter then hide these values everywhere.
            register_secret(*secret_forms(config.credentials()))
        self._ttl = listing_ttl_s
        self._max_bytes = max_result_bytes
        self._progress_interval_s = progress_interval_s
        self._conns: dict[str, Connection] = {}
        self._every_conn: set[Connection] = set()
        self._listings: dict[str, _Listing] = {}
        self._connect_locks = {name: asyncio.Lock() for name in self._configs}
        self._list_locks = {name: asyncio.Lock() for name in self._configs}
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closed = True
        conns = list(self._every_conn)
        self._conns.clear()
        self._listings.clear()
        await asyncio.gather(*(conn.wait_closed(_CLOSE_TIMEOUT_S) for conn in conns))
        self._every_conn.clear()

    # ------------------------------------------------------------------ listing

    async def list_tools(self, servers: Sequence[str]) -> ToolListing:
        """Tools of ``servers``, prefixed ``<server>__<tool>``; failing servers never raise."""
        found = await asyncio.gather(*(self._listing_or_not(s) for s in dict.fromkeys(servers)))
        return ToolListing(
            tools=tuple(spec for f in found if isinstance(f, _Listing) for spec in f.specs),
            unavailable=tuple(f for f in found if isinstance(f, UnavailableServer)),
        )

    async def _listing_or_not(self, name: str) -> _Listing | UnavailableServer:
        if name not in self._configs:
            return UnavailableServer(server=name, reason="not configured")
        try:
            return await self._listing(name)
        except ToolServerUnavailable as exc:
            logger.warning("MCP server %r unavailable: %s", name, exc.reason)
            return UnavailableServer(server=name, reason=exc.reason)

    async def _listing(self, name: str) -> _Listing:
        async with self._list_locks[name]:
            cached = self._listings.get(name)
            if cached is not None and cached.expires > time.monotonic():
                return cached
            config = self._configs[name]
            try:
                tools = await self._on_session(name, Connection.list_all_tools, idempotent=True)
            except ToolServerUnavailable:
                raise
            except Exception as exc:  # the session is dropped: the next use reconnects
                self._drop(name)
                if isinstance(exc, TimeoutError):
                    reason = f"tools/list got no answer within {config.call_timeout_s:g}s"
                else:
                    cause = exc.__cause__ if isinstance(exc, _Disconnected) else None
                    reason = describe_exception(cause or exc, config.secrets())
                raise ToolServerUnavailable(name, reason) from None
            listing = self._make_listing(config, tools)
            self._listings[name] = listing
            return listing

    def _make_listing(self, config: McpServerConfig, tools: list[Tool]) -> _Listing:
        specs: list[ToolSpec] = []
        for tool in tools:
            if config.allowed_tools is not None and tool.name not in config.allowed_tools:
                continue
            if tool.execution is not None and tool.execution.task_support == "required":
                # only callable as a task, which this client does not run
                continue
            name = prefixed(config.name, tool.name)
            if not _PROVIDER_SAFE_NAME.fullmatch(name):
                logger.warning("MCP server %r: skipping tool %r (name unusable)", config.name, name)
                continue
            description = tool.description or tool.title or ""
            specs.append(ToolSpec(name=name, description=description, parameters=tool.input_schema))
        return _Listing(time.monotonic() + self._ttl, tuple(specs))

    # -------------------------------------------------------------- connecting

    async def _connection(self, name: str) -> Connection:
        async with self._connect_locks[name]:
            conn = self._conns.get(name)
            if conn is not None and conn.alive:
                return conn
            self._drop(name)  # a dead session, if any
            if self._closed:
                raise ToolServerUnavailable(name, "the tool registry is closed")
            conn = Connection(self._configs[name])
            self._every_conn.add(conn)
            await conn.start()
            self._conns[name] = conn
            return conn

    def _drop(self, name: str, conn: Connection | None = None) -> None:
        """Forget a session (by default the current one: the next use reconnects) and let
        its runner wind down."""
        conn = conn or self._conns.get(name)
        if conn is None:
            return
        if self._conns.get(name) is conn:
            del self._conns[name]
            self._listings.pop(name, None)
        conn.close()
        self._every_conn = {c for c in self._every_conn if not c.finished or c is conn}

    async def _on_session(
        self, name: str, use: Callable[[Connection], Awaitable[T]], *, idempotent: bool = False
    ) -> T:
        """``use(connection)``; when the server answered that it does not know our session
        (it restarted), on a new session (as the MCP spec says), and ``use`` once more if
        it is idempotent or the server refused its request (:class:`_Refused`).

        Raises:
            _Disconnected: the server went away during ``use`` (the session is dropped).
        """
        for retry in (False, True):
            conn = await self._connection(name)
            try:
                return await use(conn)
            except Exception as exc:
                gone = not conn.alive or isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED
                lost = conn.session_lost.is_set()
                if gone or lost:
                    self._drop(name, conn)
                if retry or not (lost and (idempotent or isinstance(exc, _Refused))):
                    if gone:
                        raise _Disconnected from exc
                    raise
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- calling

    async def call(
        self,
        prefixed_name: str,
        arguments: dict[str, Any],
        *,
        context: ToolContext,
        progress: Progress | None = None,
    ) -> ToolOutcome:
        """Call a tool; every failure is an ``is_error`` outcome (cancellation propagates).

        With ``progress``, the server is asked for progress (a progress token), and what
        it reports is passed on, redacted, at most once per ``progress_interval_s``."""
        started = time.monotonic()
        parsed = split_prefixed(prefixed_name)
        server, tool = parsed if parsed is not None else ("", prefixed_name)

        def outcome(content: str, is_error: bool) -> ToolOutcome:
            return ToolOutcome(
                content=content,
                is_error=is_error,
                duration_ms=(time.monotonic() - started) * 1000,
                summary=one_line(content, SUMMARY_CHARS),
                server=server,
                tool=tool,
            )

        config = self._configs.get(server)
        if (
            config is None
            or server not in context.allowed_servers
            or (config.allowed_tools is not None and tool not in config.allowed_tools)
        ):
            return outcome(NOT_ALLOWED, True)
        try:
            if all(spec.name != prefixed_name for spec in (await self._listing(server)).specs):
                return outcome(NOT_ALLOWED, True)
            reports = _Reports(progress, self._progress_interval_s, config) if progress else None
            try:
                result = await self._on_session(
                    server, lambda conn: self._invoke(conn, tool, arguments, context, reports)
                )
            finally:
                if reports is not None:
                    reports.ended = True
        except Exception as exc:
            return outcome(_failure(config, exc), True)
        text = render_result(result)
        if result.is_error and not text.strip():
            text = "the tool reported an error without a message"
        return outcome(truncate(text, self._max_bytes), result.is_error)

    async def _invoke(
        self,
        conn: Connection,
        tool: str,
        arguments: dict[str, Any],
        context: ToolContext,
        progress: ProgressFnT | None,
    ) -> CallToolResult:
        tag = uuid.uuid4().hex
        # An open map on the wire; mypy does not know TypedDict ``extra_items`` yet.
        meta = cast(RequestParamsMeta, context.meta(tag))
        timeout = conn.config.call_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await conn.client.call_tool(
                    tool, arguments, read_timeout_seconds=timeout, progress_callback=progress,
                    meta=meta,
                )  # fmt: skip
        except MCPError as exc:
            if tag in conn.rejected:
                raise _Refused from exc  # the server never ran it
            raise


class _Reports:
    """One call's progress, passed on at most once per ``interval_s`` and never once the
    call has returned: the mcp library runs each report in a task of its own, which
    could otherwise pass one on after the call's result."""

    def __init__(self, tell: Progress, interval_s: float, config: McpServerConfig) -> None:
        self.tell, self.interval_s, self.secrets = tell, interval_s, config.secrets()
        self.told = -interval_s
        self.ended = False

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        if self.ended or time.monotonic() - self.told < self.interval_s:
            return
        self.told = time.monotonic()
        try:
            await self.tell(
                progress, total, one_line(redact(message or "", self.secrets), SUMMARY_CHARS)
            )
        except Exception as exc:  # the call's own outcome says what went wrong
            logger.debug("progress not passed on: %s", exc)


class _Refused(Exception):
    """The server refused the request for want of the session (its cause: the error)."""


class _Disconnected(Exception):
    """The server went away during a request."""


def _failure(config: McpServerConfig, exc: Exception) -> str:
    """What the model is told when a call failed."""
    name = config.name
    if isinstance(exc, _Refused) and isinstance(exc.__cause__, MCPError):
        exc = exc.__cause__
    if isinstance(exc, ToolServerUnavailable):
        return f"tool server {name!r} is unavailable: {exc.reason}"
    if isinstance(exc, TimeoutError) or (isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT):
        return f"the tool did not answer within {config.call_timeout_s:g}s and was cancelled"
    if isinstance(exc, _Disconnected):
        return f"tool server {name!r} disconnected during the call; whether the tool ran is unknown"
    if isinstance(exc, MCPError):
        return f"tool server {name!r} error {exc.code}: {redact(exc.message, config.secrets())}"
    return f"tool call failed: {describe_exception(exc, config.secrets())}"
