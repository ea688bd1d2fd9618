"""``threadline audit-verify BUNDLE --trusted-key PEM ...``: check an audit bundle offline.

Needs nothing but the bundle and the public keys given on the command line: no NATS,
no configuration, no data dir (it reads neither; its own argument parsing, so not even
``THREADLINE_*`` settings are loaded). The keys a bundle names are information only.
Exit 0 when every check holds, 1 with ``TAMPERED:`` and each failure (what and where),
2 when the bundle or a key cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from threadline.events.bundle import BundleError, BundleReport, decode_bundle, verify_bundle
from threadline.events.checkpoint import CheckpointError
from threadline.events.keys import KeyFileError, load_trusted_keys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline audit-verify",
        description="Check an audit bundle (threadline export --audit) offline: the "
        "checkpoint's signature, each record's inclusion proof, the session's hash chain "
        "and versions (docs/audit.md).",
    )
    parser.add_argument("bundle", type=Path, help="the bundle file")
    parser.add_argument(
        "--trusted-key",
        "--trusted-keys",
        dest="trusted_keys",
        metavar="PEM",
        type=Path,
        nargs="+",
        action="extend",
        required=True,
        help="public key(s) the checkpoint may be signed by (PEM; repeatable)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail when records after the checkpoint are not covered by it",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return asyncio.run(run(args))


async def run(args: argparse.Namespace) -> int:
    try:
        bundle = decode_bundle(await asyncio.to_thread(args.bundle.read_bytes))
        trusted = await asyncio.to_thread(load_trusted_keys, args.trusted_keys)
    except (OSError, BundleError, CheckpointError, KeyFileError) as exc:
        print(f"threadline audit-verify: {exc}", file=sys.stderr)
        return 2
    report = await verify_bundle(bundle, trusted)
    _print(args.bundle, report)
    if not report.ok:
        return 1
    return 1 if args.strict and report.not_covered else 0


def _print(file: Path, report: BundleReport) -> None:
    cp = report.checkpoint
    at = datetime.fromtimestamp(cp.time / 1e6, UTC).isoformat(timespec="seconds")
    print(f"bundle {file}: session {report.session}, {report.records} records")
    print(f"checkpoint: {cp.size} records of log {cp.log} (stream sequences "
          f"{cp.first_position}..{cp.last_position}), root {cp.root}, signed {at} by key "
          f"{cp.key_id}")  # fmt: skip
    if not report.ok:
        print("TAMPERED: the bundle fails its checks", file=sys.stderr)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
        return
    print(f"OK: the checkpoint's signature (key {cp.key_id}), {report.covered} inclusion "
          f"proofs against its root, the hash chain and versions 1..{report.last_version} "
          f"(head {report.head_hash})")  # fmt: skip
    if not report.signatures_checked:
        print("record signatures: not checked (this build signs no records)")
    if report.not_covered:
        positions = ", ".join(map(str, report.not_covered[:10]))
        more = "..." if len(report.not_covered) > 10 else ""
        print(f"NOT COVERED: {len(report.not_covered)} record(s) after the checkpoint "
              f"(stream sequences {positions}{more}): only their hash chain is checked; "
              "a later checkpoint proves them")  # fmt: skip
