"""``threadline replay SESSION``: a session's events as a readable timeline.

``--follow`` keeps going with new events live; ``--realtime`` re-plays the session at
its recorded pace (text deltas appear as they were streamed); ``--json`` writes one JSON
object per event; ``--at VERSION`` prints the session's state at that version.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import msgspec

from threadline.base.config import Settings
from threadline.events.ids import validate_session_id
from threadline.events.store import Recorded
from threadline.projections.asof import render_state, session_at
from threadline.projections.timeline import Timeline, iso, json_line, superseded_positions
from threadline.services.runtime.connect import open_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session id")
    parser.add_argument("-f", "--follow", action="store_true", help="then follow new events live")
    parser.add_argument(
        "--realtime", action="store_true", help="replay at the recorded pace (deltas as streamed)"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="--realtime speed factor")
    parser.add_argument(
        "--max-pause", type=float, default=5.0, help="--realtime: longest pause, in seconds"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument("--at", type=int, metavar="VERSION", help="the state at this version")
    parser.add_argument("--full", action="store_true", help="do not shorten long texts")
    parser.add_argument("--gap", type=float, default=2.0, help="mark gaps longer than this (s)")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return await _run(args, settings)
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    session = validate_session_id(args.session)
    async with open_store(settings) as store:
        if args.at is not None:
            state = await session_at(store, session, args.at)
            if args.json:
                print(msgspec.json.encode(state).decode())
            else:
                print("\n".join(render_state(state)))
            return 0
        records = await store.load(session)
        if not records and not args.follow:
            print(f"session {session}: no events", file=sys.stderr)
            return 2
        out = _Writer(args, superseded_positions(records))
        if records and not args.json:
            first, last = records[0], records[-1]
            span = (last.envelope.at - first.envelope.at) / 1e6
            out.write(
                f"session {session}: {len(records)} events, v{first.version}..v{last.version}, "
                f"from {iso(first.envelope.at)} over {span:.3f}s\n"
            )
        for rec in records:
            await out.show(rec)
        if args.follow:
            after = records[-1].position if records else 0
            async for rec in store.follow(session, after=after):
                await out.show(rec, live=True)
        out.finish()
    return 0


class _Writer:
    def __init__(self, args: argparse.Namespace, superseded: frozenset[int]) -> None:
        self.args = args
        self.superseded = superseded
        self.timeline = Timeline(
            stream=args.follow or args.realtime, gap_s=args.gap, full=args.full,
            superseded=superseded,
        )  # fmt: skip
        self.previous_at: int | None = None

    async def show(self, rec: Recorded, *, live: bool = False) -> None:
        args = self.args
        if args.realtime and not live and self.previous_at is not None:
            pause = (rec.envelope.at - self.previous_at) / 1e6 / max(args.speed, 1e-3)
            if pause > 0:
                await asyncio.sleep(min(pause, args.max_pause))  # pacing the output
        if args.json:
            self.write(json_line(rec, self.previous_at, rec.position in self.superseded) + "\n")
        else:
            self.write(self.timeline.feed(rec))
        self.previous_at = rec.envelope.at

    def write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()

    def finish(self) -> None:
        if not self.args.json:
            self.write(self.timeline.close())
