"""``threadline erase --owner OWNER`` / ``--before YYYY-MM``: crypto-shredding
(docs/audit.md#erasure). Destroys the owner's content keys (or every owner's for the
months before one), then appends an erasure record naming the keys, not the owner:
the content becomes unreadable everywhere, and every session still verifies."""

from __future__ import annotations

import argparse

from threadline.base.config import Settings
from threadline.events.erasure import check_period, erase
from threadline.events.sealing import describe
from threadline.services.runtime.connect import open_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--owner", help="erase everything this owner's sessions hold")
    parser.add_argument(
        "--before",
        metavar="YYYY-MM",
        type=check_period,
        help="retention: erase every owner's content written before this month",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    async with open_store(settings, user="agent") as store:  # appends to the log
        assert store.keyring is not None
        record, position = await erase(store, store.keyring, owner=args.owner, before=args.before)
        where = describe(store.keyring.store)
    what = f"owner {args.owner}" if args.owner else "every owner"
    if args.before:
        what += f", months before {args.before}"
    print(f"erased {len(record.keys)} content key(s) of {what} from {where}")
    for key in record.keys:
        print(f"  {key}")
    print(f"erasure record appended to the log at position {position}; their content now "
          "reads as [erased]")  # fmt: skip
    return 0
