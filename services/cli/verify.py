"""``threadline verify SESSION``: check a session's hash chain and versions;
``threadline verify --checkpoint FILE [--session ID]``: check the log against a signed
checkpoint (services/cli/checkpoint.py, docs/audit.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from threadline.base.config import Settings
from threadline.base.errors import StreamMissing
from threadline.events.ids import validate_session_id
from threadline.events.verify import verify_session
from threadline.services.cli.checkpoint import verify_against
from threadline.services.runtime.connect import open_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", nargs="?", help="the session id to check")
    parser.add_argument(
        "--expect-head", metavar="HASH", help="the head hash recorded earlier (detects truncation)"
    )

    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        type=Path,
        help="a signed checkpoint: prove the log today extends it (docs/audit.md)",
    )
    parser.add_argument(
        "--session",
        dest="in_checkpoint",
        metavar="ID",
        help="with --checkpoint: prove this session's events are in it",
    )
    parser.add_argument(
        "--trusted-key",
        metavar="PEM",
        type=Path,
        action="append",
        default=[],
        help="a public key checkpoints may be signed by (repeatable; default the "
        "checkpoint key's .pub in the data dir)",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.checkpoint is not None:
        in_checkpoint = args.in_checkpoint or args.session
        if in_checkpoint is not None:
            validate_session_id(in_checkpoint)
        return await verify_against(settings, args.checkpoint, in_checkpoint, args.trusted_key)
    if args.session is None:
        print("threadline verify: give a SESSION, or --checkpoint FILE", file=sys.stderr)
        return 2
    session = validate_session_id(args.session)
    try:
        async with open_store(settings, ensure=False) as store:  # reads only: creates nothing
            raw = store.follow_raw([f"{store.prefix}.{session}.*"], until_end=True)
            report = await verify_session(
                session, raw, expect_head=args.expect_head, trust=store.trust
            )
    except StreamMissing as exc:
        print(f"threadline verify: {exc}; nothing was created", file=sys.stderr)
        return 2
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
