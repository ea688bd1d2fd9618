"""``threadline verify SESSION``: check a session's hash chain and versions."""

from __future__ import annotations

import argparse
import sys

from threadline.base.config import Settings
from threadline.events.ids import validate_session_id
from threadline.events.verify import verify_session
from threadline.services.runtime.connect import open_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session id to check")
    parser.add_argument(
        "--expect-head", metavar="HASH", help="the head hash recorded earlier (detects truncation)"
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    session = validate_session_id(args.session)
    async with open_store(settings) as store:
        raw = store.follow_raw([f"{store.prefix}.{session}.*"], until_end=True)
        report = await verify_session(session, raw, expect_head=args.expect_head)
    if report.events == 0:
        print(f"session {session}: no events", file=sys.stderr)
        return 2
    if report.ok:
        print(
            f"session {session}: OK, {report.events} events, versions 1..{report.last_version}, "
            f"head {report.head_hash}"
        )
        return 0
    first = report.problems[0]
    where = f"version {first.version}" if first.version is not None else "an undecodable event"
    print(
        f"session {session}: TAMPERED or DAMAGED — first bad event at position {first.position} "
        f"({where}): {first.reason}",
        file=sys.stderr,
    )
    for problem in report.problems[1:]:
        print(f"  also position {problem.position}: {problem.reason}", file=sys.stderr)
    return 1
