"""``threadline fork SESSION --at VERSION``: a new session continuing from a past version.

The new session's history is a copy of the source's finished turns up to VERSION; its
first event records where it was forked from. Prints the new session's id on stdout.
"""

from __future__ import annotations

import argparse
import sys

from threadline.base.config import Settings
from threadline.services.commands import Fork, SessionCommands
from threadline.services.runtime.connect import open_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session to fork")
    parser.add_argument(
        "--at", type=int, required=True, metavar="VERSION", help="copy up to this version"
    )
    parser.add_argument("--provider", help="the fork's provider (default: the source's)")
    parser.add_argument(
        "--model", help="the fork's model (default: the source's; with --provider, its default)"
    )
    parser.add_argument("--id", dest="new_session", help="the new session's id (default: new)")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    fork = Fork(
        source=args.session,
        version=args.at,
        actor="system",
        provider=args.provider or "",
        model=args.model or "",
        session=args.new_session or "",
    )
    async with open_store(settings, user="gateway", writer="cli") as store:  # appends
        last = await SessionCommands(store).fork(fork)  # an operator's: not catalog-checked
    print(
        f"forked {args.session} at v{args.at} into {last.session} ({last.version} events)",
        file=sys.stderr,
    )
    print(last.session)
    return 0
