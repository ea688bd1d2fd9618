"""Threadline's bundled MCP server: demo tools (echo, arithmetic, time, per-owner notes)
and test tools (sleep, fail, big, crash), over stdio or streamable HTTP.

Run it with ``python -m threadline.services.mcpserver --transport stdio|http``.
"""

from threadline.services.mcpserver.app import build_server

__all__ = ["build_server"]
