"""The bundled MCP server's tools.

Demo tools: ``echo``, ``add``, ``calculate``, ``now``, ``notes_add``, ``notes_list``.
Test tools (on unless ``test_tools=False``): ``sleep``, ``fail``, ``big``, ``crash``.

Notes are scoped to the session owner that Threadline sends in the request's
``_meta`` (``threadline/owner``); a call without an owner is refused.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from threadline.services.agent.tools.config import META_OWNER
from threadline.services.mcpserver.calc import CalcError, calculate, format_number
from threadline.services.mcpserver.notes import NotesFull, NoteStore

SERVER_NAME = "threadline-demo"
MAX_SLEEP_S = 3600.0
MAX_BIG_BYTES = 16 * 1024 * 1024
_MAX_OWNER_CHARS = 256
_INSTRUCTIONS = (
    "Small demo tools: echo text, arithmetic, the current UTC time, and private notes "
    "kept per user."
)


def _owner(ctx: Context) -> str:
    meta = ctx.request_context.meta or {}
    owner = meta.get(META_OWNER)
    if not isinstance(owner, str) or not owner or len(owner) > _MAX_OWNER_CHARS:
        raise ToolError(f"this tool needs the session owner in the request _meta ({META_OWNER!r})")
    return owner


def build_server(notes: NoteStore | None = None, *, test_tools: bool = True) -> MCPServer:
    """The bundled server, with its notes kept in ``notes`` (in memory by default)."""
    store = notes if notes is not None else NoteStore()
    server: MCPServer = MCPServer(SERVER_NAME, instructions=_INSTRUCTIONS, log_level="WARNING")

    @server.tool(structured_output=False)
    def echo(text: Annotated[str, Field(description="The text to send back.")]) -> str:
        """Return the given text unchanged."""
        return text

    @server.tool(structured_output=False)
    def add(
        a: Annotated[float, Field(description="First number.")],
        b: Annotated[float, Field(description="Second number.")],
    ) -> str:
        """Add two numbers and return the sum."""
        return format_number(a + b)

    @server.tool(name="calculate", structured_output=False)
    def calculate_tool(
        expression: Annotated[
            str,
            Field(
                description="Arithmetic such as '(2 + 3) * 4 / 5' or '2 ** 10'. Numbers, "
                "+ - * / // % **, and parentheses only.",
                max_length=200,
            ),
        ],
    ) -> str:
        """Evaluate an arithmetic expression exactly (integers stay exact) and return the value."""
        try:
            return format_number(calculate(expression))
        except CalcError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(structured_output=False)
    def now() -> str:
        """The current date and time in UTC, as ISO 8601 (e.g. 2025-01-31T09:30:00+00:00)."""
        return datetime.now(UTC).isoformat(timespec="seconds")

    @server.tool(structured_output=False)
    async def notes_add(
        text: Annotated[str, Field(description="The note to remember.", max_length=4000)],
        ctx: Context,
    ) -> str:
        """Save a private note for the current user. Only this user can list it later."""
        try:
            count = await store.add(_owner(ctx), text)
        except NotesFull as exc:
            raise ToolError(str(exc)) from None
        return f"Saved. You have {count} note{'s' if count != 1 else ''}."

    @server.tool(structured_output=False)
    async def notes_list(ctx: Context) -> str:
        """List the current user's notes, oldest first."""
        mine = await store.notes_of(_owner(ctx))
        if not mine:
            return "No notes yet."
        return "\n".join(f"{i}. {note['text']}" for i, note in enumerate(mine, start=1))

    if test_tools:
        _add_test_tools(server)
    return server


def _add_test_tools(server: MCPServer) -> None:
    @server.tool(structured_output=False)
    async def sleep(
        seconds: Annotated[float, Field(description="How long to wait.", ge=0, le=MAX_SLEEP_S)],
    ) -> str:
        """Wait for the given number of seconds, then answer. Cancellable. For tests."""
        await anyio.sleep(seconds)
        return f"Slept {format_number(seconds)} s."

    @server.tool(structured_output=False)
    def fail(message: Annotated[str, Field(description="The error text to return.")]) -> str:
        """Always fail, returning the given message as a tool error. For tests."""
        raise ToolError(message)

    @server.tool(structured_output=False)
    def big(
        n_bytes: Annotated[int, Field(description="Size of the text.", ge=0, le=MAX_BIG_BYTES)],
    ) -> str:
        """Return a text of exactly n_bytes ASCII bytes. For tests of large results."""
        line = "abcdefghijklmnopqrstuvwxyz0123456789\n"
        return (line * (n_bytes // len(line) + 1))[:n_bytes]

    @server.tool(structured_output=False)
    def crash() -> str:
        """Terminate the server process abruptly, in the middle of this call. For tests."""
        os._exit(70)
