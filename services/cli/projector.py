"""``threadline projector``: run the projector alone against the configured NATS.

Follows the event stream and keeps the views (SQLite under the data dir, or
PostgreSQL with ``THREADLINE_DATABASE_URL``) up to date until Ctrl-C or SIGTERM.
Several can run at once on one database: the tracking records keep every event
applied exactly once. Also runnable as ``python -m threadline.services.cli projector``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from threadline.base.config import Settings
from threadline.projections.aio import in_thread, stop_task
from threadline.projections.config import ProjectorConfig
from threadline.projections.metrics import watch_projector
from threadline.projections.projector import Projector
from threadline.services.runtime.connect import open_store
from threadline.services.runtime.metrics_http import add_metrics_arguments, serve_metrics
from threadline.services.runtime.processes import stop_event


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on-error",
        choices=["halt", "skip"],
        help="a view that raises on an event halts there (default) or skips it",
    )
    parser.add_argument("--batch-size", type=int, help="most events per transaction")
    add_metrics_arguments(parser)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    config = ProjectorConfig.from_settings(
        settings, on_error=args.on_error, batch_size=args.batch_size
    )
    stop = stop_event()
    async with open_store(settings) as store:
        recorder = await in_thread(config.open)
        unwatch = None
        try:
            projector = Projector(
                store, recorder, on_error=config.on_error, batch_size=config.batch_size
            )
            await projector.load()
            unwatch = watch_projector(projector)
            print(
                f"projector: views in {recorder.location}, on_error={config.on_error}, "
                f"resuming at {projector.positions}",
                flush=True,
            )
            task = asyncio.create_task(projector.run(), name="projector")
            stopping = asyncio.create_task(stop.wait())
            async with serve_metrics(
                args.metrics_port, host=args.metrics_host or settings.host
            ) as metrics:
                if metrics is not None:
                    print(f"metrics on {metrics}", flush=True)
                await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            await stop_task(task)
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure
        finally:
            if unwatch is not None:
                unwatch()
            await in_thread(recorder.close)
    for name, broken in projector.halted.items():
        print(
            f"the {name} view halted at position {broken.position}: {broken.reason}",
            file=sys.stderr,
        )
    if projector.halted:
        return 1
    print(f"projector stopped at {projector.positions}", flush=True)
    return 0
