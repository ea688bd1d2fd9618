"""``python -m bench [--quick] [--only SECTIONS] [--write FILE]``: run the benchmarks and
print a Markdown report.

``--write FILE`` also puts each section's figures into FILE between its
``<!-- bench:NAME -->`` markers, keeping the hand-written text around them
(``bench/report.py``); a FILE that does not exist gets the plain report.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import threadline.events
from bench import (
    agent,
    audit,
    client,
    e2e,
    eventlog,
    gateway,
    longsession,
    openloop,
    projections,
    reads,
    report,
)
from bench.common import machine, nats_server, progress
from bench.peers import section as peers
from threadline.services.runtime import heap

#: sections sharing one throwaway nats-server: name -> (title, run(nats_url, quick=...))
SHARED: dict[str, tuple[str, Callable[..., Awaitable[list[str]]]]] = {
    "eventlog": ("Event log", eventlog.run),
    "reads": ("Bounded reads", reads.run),
    "agent": ("Agent", agent.run),
    "client": ("Model client", client.run),
    "gateway": ("Gateway", gateway.run),
    "projections": ("Projections", projections.run),
}
#: sections that start their own servers (a stack per level): name -> (title, run(quick=...))
OWN: dict[str, tuple[str, Callable[..., Awaitable[list[str]]]]] = {
    "e2e": ("End to end", e2e.run),
    "peers": ("Against the peers", peers.run),
    "longsession": ("Long session", longsession.run),
    "openloop": ("Open loop with think time", openloop.run),
    "audit": ("Audit features' cost", audit.run),
}
TITLES = {name: title for name, (title, _) in (SHARED | OWN).items()}


def code_version() -> str:
    """The commit of the code measured (where ``threadline`` is imported from), and whether
    its packages have uncommitted changes (with a hash of them, so a change during a run
    shows); an exported tree names its ``COMMIT`` file."""
    root = Path(threadline.events.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("diff", "HEAD", "--", "events", "services", "projections")
        dirty += git("status", "--porcelain", "--", "events", "services", "projections")
    except (OSError, subprocess.SubprocessError):
        stamp = root / "COMMIT"
        if stamp.exists():
            return f"commit {stamp.read_text().strip()} (a clean export of it)"
        return str(root)
    if not dirty:
        return f"commit {commit}"
    return (
        f"commit {commit} with uncommitted changes ({hashlib.sha1(dirty.encode()).hexdigest()[:8]})"
    )


def _sections(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in TITLES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(TITLES)} (got {value!r})")
    return names


async def main(args: argparse.Namespace) -> tuple[str, dict[str, list[str]]]:
    command = " ".join(["python -m bench", *sys.argv[1:]])
    code = code_version()
    started = datetime.datetime.now(datetime.UTC)
    blocks: dict[str, list[str]] = {}
    shared = [name for name in SHARED if name in args.only]
    # the sections that run Threadline in this process run it as its services do once up
    # (services/runtime/heap.py): start-up's objects frozen, so a full collection does not
    # walk every imported module (twice as many objects as at 19af2a4: the events layer's
    # metrics import prometheus-client) and young collections less often
    heap.settle()
    if shared:
        async with nats_server() as server:
            progress(f"nats-server at {server.url}")
            for name in shared:
                blocks[name] = await SHARED[name][1](server.url, quick=args.quick)
    for name in (name for name in OWN if name in args.only):
        blocks[name] = await OWN[name][1](quick=args.quick)
    if (code_now := code_version()) != code:
        code = f"{code} at the start and {code_now} at the end (it changed during the run)"
    run_line = (
        f"Run {started:%Y-%m-%d %H:%M} UTC on {machine()}, code at {code}, command `{command}`."
    )
    plain = [run_line, ""]
    for name, lines in blocks.items():
        plain += [f"### {TITLES[name]}", "", *lines, ""]
    return "\n".join(plain), {name: [run_line, "", *lines] for name, lines in blocks.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument(
        "--only",
        type=_sections,
        default=list(TITLES),
        metavar="SECTIONS",
        help=f"comma-separated sections to run (default: all of {','.join(TITLES)})",
    )
    parser.add_argument("--write", help="also write the report into this Markdown file")
    args = parser.parse_args()
    text, blocks = asyncio.run(main(args))
    print(text)
    if args.write:
        report.write(args.write, blocks, TITLES, text)
        progress(f"wrote {args.write}")
    sys.exit(0)
