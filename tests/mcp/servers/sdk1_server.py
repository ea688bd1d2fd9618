"""A server on the MCP Python SDK 1.x (FastMCP), run by the tests with that SDK's Python.

``python sdk1_server.py stdio`` or ``python sdk1_server.py http PORT`` (stateful sessions,
the SDK's default). Not imported by the suite: it runs in its own virtual environment.
"""

import sys

import anyio
from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("sdk1-test", host="127.0.0.1", port=int(sys.argv[2]) if len(sys.argv) > 2 else 0)


@server.tool()
def answer() -> int:
    """The answer."""
    return 42


@server.tool()
def pair() -> dict[str, int]:
    """Two numbers."""
    return {"a": 1, "b": 2}


@server.tool()
async def steps(count: int, ctx: Context) -> str:
    """Report progress ``count`` times, then answer."""
    for i in range(1, count + 1):
        await ctx.report_progress(i, count, f"step {i}")
        await anyio.sleep(0.01)
    return f"{count} steps done"


if __name__ == "__main__":
    server.run("streamable-http" if sys.argv[1] == "http" else "stdio")
