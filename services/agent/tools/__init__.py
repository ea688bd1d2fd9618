"""MCP tools for the agent: configuration, the :class:`ToolRegistry`, and call outcomes.

Tool names offered to models are ``<server>__<tool>`` (see :data:`TOOL_SEPARATOR`).
See docs/mcp.md.
"""

from threadline.services.agent.tools.config import (
    META_OWNER,
    META_REQUEST,
    META_SESSION,
    META_TURN,
    TOOL_SEPARATOR,
    InvalidToolConfig,
    McpServerConfig,
    ToolContext,
    ToolListing,
    ToolOutcome,
    ToolServerUnavailable,
    UnavailableServer,
    prefixed,
    split_prefixed,
)
from threadline.services.agent.tools.content import DEFAULT_MAX_RESULT_BYTES
from threadline.services.agent.tools.registry import NOT_ALLOWED, Progress, ToolRegistry

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "META_OWNER",
    "META_REQUEST",
    "META_SESSION",
    "META_TURN",
    "NOT_ALLOWED",
    "TOOL_SEPARATOR",
    "InvalidToolConfig",
    "McpServerConfig",
    "Progress",
    "ToolContext",
    "ToolListing",
    "ToolOutcome",
    "ToolRegistry",
    "ToolServerUnavailable",
    "UnavailableServer",
    "prefixed",
    "split_prefixed",
]
