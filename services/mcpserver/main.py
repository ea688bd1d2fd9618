"""Command line of the bundled MCP server: ``--transport stdio|http``.

Over HTTP it prints one readiness line to stdout once the socket listens::

    threadline-mcp listening on http://127.0.0.1:8765/mcp
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

from threadline.base.errors import PortInUse
from threadline.services.mcpserver.app import build_server
from threadline.services.mcpserver.notes import NoteStore
from threadline.services.runtime.asgi import serve_asgi
from threadline.services.runtime.processes import stop_event

READY_PREFIX = "threadline-mcp listening on "
MCP_PATH = "/mcp"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline mcp", description="Threadline's bundled MCP server (demo and test tools)."
    )
    parser.add_argument(
        "--transport", choices=("stdio", "http"), default="stdio", help="default: stdio"
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP: address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="HTTP: port (0 picks a free one)")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="keep notes in DATA_DIR/notes.json"
    )
    parser.add_argument(
        "--no-test-tools",
        action="store_true",
        help="hide the test tools (sleep, fail, big, crash)",
    )
    return parser


async def serve_http(server: MCPServer, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, with the readiness line once it accepts connections."""
    stop = stop_event()
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    async with serve_asgi(app, host=host, port=port, lifespan="on", name="MCP server") as url:
        print(f"{READY_PREFIX}{url}{MCP_PATH}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    notes = NoteStore(args.data_dir / "notes.json" if args.data_dir is not None else None)
    server = build_server(notes, test_tools=not args.no_test_tools)
    try:
        if args.transport == "stdio":
            anyio.run(server.run_stdio_async)
        else:
            anyio.run(serve_http, server, args.host, args.port)
    except KeyboardInterrupt:
        return 130
    except (OSError, PortInUse) as exc:
        print(f"threadline mcp: {exc}", file=sys.stderr)
        return 1
    return 0
