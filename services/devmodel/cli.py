"""``threadline devmodel``: run the dev model as a standalone HTTP server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from threadline.base.errors import PortInUse
from threadline.services.runtime.processes import stop_event

from .app import serve
from .settings import DevModelSettings

DEFAULT_PORT = 8100


def _parser() -> argparse.ArgumentParser:
    defaults = DevModelSettings()
    parser = argparse.ArgumentParser(
        prog="threadline devmodel",
        description="A local fake LLM speaking the OpenAI and Anthropic wire formats.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0 = any free)")
    for flag, help_text in (
        ("--ttft-ms", "delay before the first token, in milliseconds"),
        ("--tokens-per-second", "streaming pace; 0 = unthrottled"),
    ):
        default = getattr(defaults, flag[2:].replace("-", "_"))
        help_text += " (default %(default)s)"
        parser.add_argument(flag, type=float, default=default, help=help_text)
    parser.add_argument(
        "--context-tokens",
        type=int,
        default=None,
        help="refuse requests whose prompt plus max_tokens exceed this many words",
    )
    return parser


async def _run(settings: DevModelSettings, host: str, port: int) -> None:
    stop = stop_event()
    async with serve(settings, host, port) as url:
        print(
            f"Threadline dev model (ttft {settings.ttft_ms:g} ms, "
            f"{settings.tokens_per_second:g} tokens/s)"
        )
        print(f"  OpenAI base URL:    {url}/v1")
        print(f"  Anthropic base URL: {url}")
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    settings = DevModelSettings(
        ttft_ms=args.ttft_ms,
        tokens_per_second=args.tokens_per_second,
        context_tokens=args.context_tokens,
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_run(settings, args.host, args.port))
    except PortInUse as exc:
        print(f"threadline devmodel: {PortInUse(exc.host, exc.port, '--port')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"threadline devmodel: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0
