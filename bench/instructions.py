"""``python -m bench.instructions REV [--events SMALL,LARGE] [--write FILE]``: the
instructions one event costs on the event-log path (an awaited ``store.append`` until
``store.follow`` yields it, writer and follower in one process), counted by valgrind's
callgrind for REV's code and this checkout's, beside raw nats-py doing the same
(``js.publish`` -> an ordered push consumer).

Latency on a shared 2-core machine moves by tens of microseconds between runs; an
instruction count does not move with the machine's load, so "does the new code do more
work per event" gets an answer that the same command repeats. Each loop runs twice, with
SMALL and LARGE events, and the difference divided by LARGE - SMALL is the cost of one
event with start-up (imports, connections) taken out. Hash randomisation is off
(``PYTHONHASHSEED=0``); what is left to vary is how many deliveries the event loop finds
at once, which depends on timing: the same code's count moves by about 1% between runs.
It counts the Python process only: nats-server's work is the same for both trees (the
same messages, the same headers).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import report
from bench.against import ROOT, export
from bench.common import machine, nats_server, progress

#: run in each tree (its own ``bench.eventlog`` gives the stream settings and the event)
LOOP = """
import asyncio, sys
import nats
from nats.js.api import DeliverPolicy
from bench import eventlog
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.store import NewEvent

async def store(url, n):
    settings = eventlog._settings()
    writer = await JetStreamEventStore.connect(url, settings)
    reader = await JetStreamEventStore.connect(url, settings)
    got = asyncio.Queue()
    async def follow():
        async for _ in reader.follow("s"):
            got.put_nowait(None)
    task = asyncio.create_task(follow())
    for _ in range(n):
        await writer.append("s", NewEvent(event=eventlog.PAYLOAD))
        await got.get()
    task.cancel()
    await writer.close()
    await reader.close()

async def raw(url, n):
    settings = eventlog._settings()
    await (await JetStreamEventStore.connect(url, settings)).close()  # the same stream
    nc = await nats.connect(url)
    js = nc.jetstream()
    subject = f"{settings.prefix}.s.text_delta"
    got = asyncio.Queue()
    async def on_msg(msg):
        got.put_nowait(None)
    sub = await js.subscribe(subject, cb=on_msg, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.NEW)
    for _ in range(n):
        await js.publish(subject, b'{"event":{"kind":"text_delta","text":"x"}}')
        await got.get()
    await sub.unsubscribe()
    await nc.close()

asyncio.run({"store": store, "raw": raw}[sys.argv[1]](sys.argv[2], int(sys.argv[3])))
print(sys.argv[3], "events followed")
"""
_COLLECTED = re.compile(r"Collected : (\d+)")
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")


def run_loop(
    root: Path, python: str, loop: str, url: str, events: int, *, under: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """One run of ``loop`` (``store`` or ``raw``) over ``events`` events in ``root``'s
    tree, ``under`` a command (valgrind's) or not."""
    return subprocess.run(
        [*under, python, "-c", LOOP, loop, url, str(events)],
        cwd=root, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": "0"},
    )  # fmt: skip


def count(root: Path, python: str, loop: str, url: str, events: int) -> int:
    """Instructions of one run of ``loop`` over ``events`` events."""
    done = run_loop(root, python, loop, url, events, under=CALLGRIND)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total:\n{done.stderr[-2000:]}")
    return int(found[1])


async def per_event(root: Path, python: str, loop: str, url: str, small: int, large: int) -> float:
    """Instructions per event: two runs at once (two cores), the difference per event."""
    low, high = await asyncio.gather(
        *(asyncio.to_thread(count, root, python, loop, url, n) for n in (small, large))
    )
    return (high - low) / (large - small)


async def measure(sides: list[tuple[str, Path, str]], small: int, large: int) -> list[str]:
    lines = [
        "| code | store: instructions/event | raw nats-py: instructions/event | store / raw |",
        "| --- | --- | --- | --- |",
    ]
    async with nats_server() as server:
        for name, root, python in sides:
            figures = {}
            for loop in ("store", "raw"):
                progress(f"{name}: {loop} loop under callgrind, {small} and {large} events")
                figures[loop] = await per_event(root, python, loop, server.url, small, large)
            lines.append(
                f"| {name} | {figures['store']:,.0f} | {figures['raw']:,.0f} "
                f"| {figures['store'] / figures['raw']:.2f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("rev", help="the earlier commit to compare with")
    parser.add_argument("--events", default="500,1500", metavar="SMALL,LARGE")
    parser.add_argument("--write", help="also write the table into this Markdown file")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    small, large = (int(n) for n in args.events.split(","))
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="threadline-instructions-") as tmp:
        commit = export(args.rev, Path(tmp))
        sides = [
            (commit, Path(tmp), str(Path(tmp) / ".venv/bin/python")),
            ("now", ROOT, sys.executable),
        ]
        table = asyncio.run(measure(sides, small, large))
    command = " ".join(["python -m bench.instructions", *sys.argv[1:]])
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC on {machine()}, command `{command}`: "
        "instructions of the Python process per event, counted by callgrind.",
        "",
        *table,
    ]
    print("\n".join(lines))
    if args.write:
        report.write(
            args.write, {"instructions": lines}, {"instructions": "Instructions per event"},
            "\n".join(lines),
        )  # fmt: skip
        progress(f"wrote {args.write}")


if __name__ == "__main__":
    main()
