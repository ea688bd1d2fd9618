"""``python -m bench [--quick] [--write FILE]``: run the benchmarks and print a Markdown report."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
from pathlib import Path

from bench import agent, eventlog, gateway, projections
from bench.common import machine, nats_server, progress


async def main(args: argparse.Namespace) -> str:
    sections: list[str] = [
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {machine()}, "
        f"command `python -m bench{' --quick' if args.quick else ''}`.",
        "",
    ]
    async with nats_server() as server:
        progress(f"nats-server at {server.url}")
        sections += ["### Event log", "", *await eventlog.run(server.url, quick=args.quick), ""]
        sections += ["### Agent", "", *await agent.run(server.url, quick=args.quick), ""]
        sections += ["### Gateway", "", *await gateway.run(server.url, quick=args.quick), ""]
        sections += [
            "### Projections",
            "",
            *await projections.run(server.url, quick=args.quick),
            "",
        ]
    return "\n".join(sections)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--write", help="also write the Markdown report to this file")
    args = parser.parse_args()
    report = asyncio.run(main(args))
    print(report)
    if args.write:
        Path(args.write).write_text(report + "\n")
        progress(f"wrote {args.write}")
    sys.exit(0)
