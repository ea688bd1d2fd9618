"""The ``threadline`` command."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from types import ModuleType
from typing import Any

from threadline.base.config import Settings, load_settings
from threadline.base.errors import PortInUse, ThreadlineError
from threadline.base.logs import configure_logging

Runner = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

#: Each command is a module of ``threadline.services.cli`` with ``add_arguments`` and
#: ``run``; only the one being run is imported (start-up stays fast for every command).
COMMANDS: dict[str, str] = {
    "up": "run everything on the embedded default (NATS, services, dev model)",
    "verify": "check a session's hash chain, or the log against a signed checkpoint",
    "checkpoint": "sign a checkpoint of the log now (docs/audit.md)",
    "export": "write a session's audit bundle (--audit): records, proofs, checkpoint",
    "erase": "erase an owner's content, or every owner's before a month (docs/audit.md)",
    "gateway": "run the HTTP gateway alone against THREADLINE_NATS_URL",
    "agent": "run an agent worker against THREADLINE_NATS_URL",
    "projector": "run the projector alone against THREADLINE_NATS_URL",
    "projections": "rebuild views from the log, or show their status",
    "replay": "a session's timeline (live, real-time, JSON, as of a version)",
    "fork": "fork a session at a version",
    "chat": "chat with a gateway from the terminal (new session, or resume SESSION)",
    "cluster": "run a 3-node JetStream cluster and every service locally",
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"threadline.services.cli.{name}")


#: Commands with their own argument parsing: ``threadline NAME ...`` calls ``main(rest)``.
PASSTHROUGH: dict[str, tuple[str, str]] = {
    "audit-verify": (
        "threadline.services.cli.auditverify",
        "check an audit bundle offline against trusted public keys (no NATS, no config)",
    ),
    "devmodel": (
        "threadline.services.devmodel.cli",
        "run the local dev model (OpenAI and Anthropic wire formats)",
    ),
    "mcp": (
        "threadline.services.mcpserver.main",
        "run the bundled MCP server (stdio or streamable HTTP)",
    ),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``selected``'s module is imported for its options."""
    parser = argparse.ArgumentParser(
        prog="threadline", description="Threadline: an event-sourced chat backend for LLM agents."
    )
    parser.add_argument("--config", help="a TOML config file (default ./threadline.toml)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING... (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name not in ("cluster", "projections"):  # they say where theirs goes
            cmd.add_argument("--data-dir", help="where data lives (default ./.threadline)")
        if name == selected:
            command_module(name).add_arguments(cmd)
    for name, (_, help_text) in PASSTHROUGH.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        target = importlib.import_module(PASSTHROUGH[argv[0]][0])
        code: int = target.main(argv[1:])
        return code
    selected = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            config_file=args.config,
            log_level=args.log_level,
            data_dir=getattr(args, "data_dir", None),
            port=getattr(args, "port", None),
            nats_port=getattr(args, "nats_port", None),
        )
        configure_logging(settings.log_level, settings.log_format)
        runner: Runner = command_module(args.command).run
        return asyncio.run(runner(args, settings))
    except ThreadlineError as exc:
        if isinstance(exc, PortInUse):  # name the option that chose the port
            exc = PortInUse(exc.host, exc.port, _option(exc.port, args, settings))
        print(f"threadline: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _option(port: int, args: argparse.Namespace, settings: Settings) -> str:
    """The option that chose ``port`` (for a message)."""
    for dest in ("port", "nats_port", "metrics_port"):
        if hasattr(args, dest) and port in (getattr(args, dest), getattr(settings, dest, None)):
            return "--" + dest.replace("_", "-")
    return "THREADLINE_DEVMODEL_PORT" if port == settings.devmodel_port else ""
