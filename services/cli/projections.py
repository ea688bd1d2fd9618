"""``threadline projections rebuild [VIEW]`` and ``threadline projections status``."""

from __future__ import annotations

import argparse
import sys
import time

import msgspec

from threadline.base.aio import in_thread
from threadline.base.config import Settings
from threadline.projections.config import ProjectorConfig
from threadline.projections.model import VIEW_NAMES
from threadline.projections.rebuild import rebuild, status
from threadline.services.runtime.connect import open_store

PROGRESS_EVERY_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = sub.add_parser(
        "rebuild",
        help="rebuild views from the log into a fresh database and swap them in",
        description="Rebuild views from the whole log into a fresh database, then swap "
        "them in atomically (a running projector carries on from there).",
    )
    build.add_argument("view", nargs="?", choices=VIEW_NAMES, help="one view (default: all)")
    build.add_argument(
        "--on-error", choices=["halt", "skip"], help="a view raising on an event: halt or skip it"
    )
    show = sub.add_parser("status", help="each view's position, the stream's end, and the lag")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    for action in (build, show):
        action.add_argument("--data-dir", help="where data lives (default ./.threadline)")


class _Progress:
    """One line per second on stderr while a rebuild runs."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.events = 0
        self.started = self.shown = time.monotonic()

    def __call__(self, events: int, position: int) -> None:
        self.events += events
        now = time.monotonic()
        if now - self.shown >= PROGRESS_EVERY_S:
            self.shown = now
            rate = self.events / max(now - self.started, 1e-9)
            share = f" ({100 * position / self.target:.0f}%)" if self.target else ""
            print(
                f"  rebuilt {self.events:,} events, at position {position:,} of "
                f"{self.target:,}{share}, {rate:,.0f} events/s",
                file=sys.stderr,
                flush=True,
            )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    on_error = getattr(args, "on_error", None)
    config = ProjectorConfig.from_settings(settings, on_error=on_error)
    async with open_store(settings) as store:
        if args.action == "rebuild":
            views = [args.view] if args.view else None
            progress = _Progress(await store.last_position())
            print(f"rebuilding {args.view or 'all views'} from {progress.target:,} events ...")
            result = await rebuild(store, config, views, progress=progress)
            print(
                f"rebuilt {', '.join(result.views)}: {result.events:,} events in "
                f"{result.seconds:.2f}s, swapped in at position {result.position:,}"
            )
            return 0
        recorder = await in_thread(config.open)
        try:
            views_status = await status(store, recorder)
            errors = await in_thread(recorder.errors, 5)
            location = recorder.location
        finally:
            await in_thread(recorder.close)
    if args.json:
        rows = [
            {"view": s.view, "position": s.position, "last": s.last_position, "lag": s.lag}
            | ({"halted_at": s.halted_at} if s.halted_at is not None else {})
            for s in views_status
        ]
        print(msgspec.json.encode({"location": location, "views": rows, "errors": errors}).decode())
        return 0
    print(f"views in {location}")
    print(f"{'view':<10} {'position':>12} {'stream end':>12} {'lag':>10}")
    for s in views_status:
        halted = "" if s.halted_at is None else f"  HALTED at position {s.halted_at:,}"
        print(f"{s.view:<10} {s.position:>12,} {s.last_position:>12,} {s.lag:>10,}{halted}")
    if errors:
        print(f"projection errors (newest {len(errors)}):")
        for e in errors:
            print(f"  position {e.position} (session {e.session or '?'}): {e.reason}")
    return 0
