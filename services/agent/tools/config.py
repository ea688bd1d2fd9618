"""Configuration and value types of the MCP tool layer.

Tool names offered to a model are prefixed with the server name and
:data:`TOOL_SEPARATOR` (``<server>__<tool>``): server names match ``[a-z0-9_-]+``
and may not contain the separator themselves, so the first ``__`` in a prefixed
name always splits it back into server and tool.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

from threadline.base.errors import ConfigurationError, ThreadlineError
from threadline.events.conversation import ToolSpec

#: Between the server name and the tool name in a prefixed tool name.
TOOL_SEPARATOR = "__"

#: Metadata keys sent in the ``_meta`` of every ``tools/call`` request.
META_OWNER: Final = "threadline/owner"
META_SESSION: Final = "threadline/session"
META_TURN: Final = "threadline/turn"
#: A tag of this request alone: a refused request is known by it, and sent again.
META_REQUEST: Final = "threadline/request"

_SERVER_NAME = re.compile(r"[a-z0-9_-]+")
_CREDENTIAL_NAME = re.compile(r"(?i)key|token|secret|pass|auth|cred|cookie|session|private")


class InvalidToolConfig(ConfigurationError, ValueError):
    """An MCP server entry is malformed (a ``ValueError`` too, so msgspec decoding reports it)."""


class ToolServerUnavailable(ThreadlineError):
    """An MCP server could not be reached, failed to start, or timed out.

    ``reason`` is short and redacted: it never contains configured header or env values.
    """

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"MCP server {server!r} is unavailable: {reason}")
        self.server = server
        self.reason = reason


class McpServerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One MCP server: a command spoken to over stdio, or a streamable HTTP URL."""

    name: str
    transport: Literal["stdio", "http"]
    #: stdio: the executable and its arguments.
    command: list[str] = []
    #: stdio: extra environment; the server inherits only a minimal safe set otherwise.
    env: dict[str, str] = {}
    #: http: the endpoint, e.g. ``http://127.0.0.1:8765/mcp``.
    url: str = ""
    #: http: sent on every request exactly as configured (e.g. an API key for the server).
    headers: dict[str, str] = {}
    call_timeout_s: float = 30
    startup_timeout_s: float = 10
    #: when set, only these (unprefixed) tools are listed and callable.
    allowed_tools: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _SERVER_NAME.fullmatch(self.name) or TOOL_SEPARATOR in self.name:
            raise InvalidToolConfig(
                f"MCP server name {self.name!r} must match [a-z0-9_-]+ "
                f"and must not contain {TOOL_SEPARATOR!r}"
            )
        if self.transport == "stdio" and not self.command:
            raise InvalidToolConfig(f"MCP server {self.name!r}: stdio needs a command")
        if self.transport == "http" and not self.url.startswith(("http://", "https://")):
            raise InvalidToolConfig(f"MCP server {self.name!r}: http needs an http(s):// url")
        if self.call_timeout_s <= 0 or self.startup_timeout_s <= 0:
            raise InvalidToolConfig(f"MCP server {self.name!r}: timeouts must be positive")

    def secrets(self) -> tuple[str, ...]:
        """Values that never appear in an error reason: every header and env value."""
        return tuple(v for v in (*self.headers.values(), *self.env.values()) if v)

    def credentials(self) -> tuple[str, ...]:
        """Values registered with the process-wide log redactor: every header value, and
        env values whose names look like credentials (``LOG_LEVEL=warning`` must not
        blank out every "warning" in the logs)."""
        env = (v for k, v in self.env.items() if _CREDENTIAL_NAME.search(k))
        return tuple(v for v in (*self.headers.values(), *env) if v)


class ToolContext(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: sent to the server as ``_meta``; bounds which servers may be used."""

    session_id: str
    owner: str
    turn_id: str
    allowed_servers: tuple[str, ...]

    def meta(self, request: str) -> dict[str, str]:
        """The ``_meta`` of a ``tools/call`` request tagged ``request``."""
        ids = (self.owner, self.session_id, self.turn_id, request)
        return dict(zip((META_OWNER, META_SESSION, META_TURN, META_REQUEST), ids, strict=True))


class ToolOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one tool call, ready to be recorded as a ``ToolResult``."""

    content: str
    is_error: bool
    duration_ms: float
    summary: str
    server: str
    tool: str


class UnavailableServer(msgspec.Struct, frozen=True, kw_only=True):
    server: str
    reason: str


class ToolListing(msgspec.Struct, frozen=True, kw_only=True):
    """Tools offered to the model, and the servers left out because they are unavailable."""

    tools: tuple[ToolSpec, ...] = ()
    unavailable: tuple[UnavailableServer, ...] = ()


def prefixed(server: str, tool: str) -> str:
    return f"{server}{TOOL_SEPARATOR}{tool}"


def split_prefixed(name: str) -> tuple[str, str] | None:
    """``"notes__add"`` -> ``("notes", "add")``; ``None`` when the name has no server part."""
    server, sep, tool = name.partition(TOOL_SEPARATOR)
    if not sep or not server or not tool:
        return None
    return server, tool
