"""MCP tools for the agent: configuration, the :class:`ToolRegistry`, and call outcomes.

Tool names offered to models are ``<server>__<tool>`` (see :data:`TOOL_SEPARATOR`).
See docs/mcp.md.
"""

from threadline.services.agent.tools.config import (
    META_OWNER,
    META_SESSION,
    META_TURN,
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
from threadline.services.agent.tools.registry import NOT_ALLOWED, Progress, ToolRegistry

__all__ = [
    "META_OWNER",
    "META_SESSION",
    "META_TURN",
    "NOT_ALLOWED",
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
