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
from threadline.projections import serve_projector
from threadline.services.runtime import heap
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
    stop = stop_event()
    overrides = {"on_error": args.on_error, "batch_size": args.batch_size}
    async with (
        open_store(settings) as store,
        serve_projector(settings, store, **overrides) as projector,
        serve_metrics(args.metrics_port, host=args.metrics_host or settings.host) as metrics,
    ):
        heap.settle()
        print(
            f"projector: views in {projector.recorder.location}, on_error={projector.on_error}, "
            f"resuming at {projector.positions}",
            flush=True,
        )
        if metrics is not None:
            print(f"metrics on {metrics}", flush=True)
        task = projector.running
        assert task is not None
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    if not task.cancelled() and (failure := task.exception()) is not None:
        raise failure
    for name, broken in projector.halted.items():
        print(
            f"the {name} view halted at position {broken.position}: {broken.reason}",
            file=sys.stderr,
        )
    if projector.halted:
        return 1
    print(f"projector stopped at {projector.positions}", flush=True)
    return 0
