"""``threadline agent``: run an agent worker alone against a NATS server."""

from __future__ import annotations

import argparse

from threadline.base.config import Settings
from threadline.base.errors import ConfigurationError
from threadline.base.tracing import tracing_from_env
from threadline.events.readiness import config_checked
from threadline.services.agent.service import serve_agent
from threadline.services.runtime import heap
from threadline.services.runtime.connect import connected
from threadline.services.runtime.metrics_http import add_metrics_arguments, serve_metrics
from threadline.services.runtime.processes import stop_event


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=500, help="turns at once (500)")
    parser.add_argument(
        "--ack-wait", type=float, default=30.0, help="seconds before an unacked turn is redelivered"
    )
    add_metrics_arguments(parser)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    with tracing_from_env(service_name="threadline-agent"):
        if not settings.nats_url:
            raise ConfigurationError("set THREADLINE_NATS_URL (or use `threadline up`)")
        stop = stop_event()
        async with (
            connected(settings, settings.nats_url, "agent") as store,
            serve_metrics(
                args.metrics_port,
                host=args.metrics_host or settings.host,
                ready=lambda: config_checked(store),
            ) as metrics,
            serve_agent(settings, store, concurrency=args.concurrency, ack_wait_s=args.ack_wait),
        ):
            heap.settle()
            print(f"agent worker consuming {settings.prefix}.*.user_message", flush=True)
            if metrics is not None:
                print(f"metrics on {metrics}", flush=True)
            await stop.wait()
        return 0
