"""``threadline audit-verify BUNDLE --checkpoint-key PEM --trusted-keys POLICY``: check an
audit bundle offline.

Needs nothing but the bundle and the keys given on the command line (the checkpoint's
public key, the records' trust policy: events/signing.py): no NATS,
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
from threadline.events.signing import TrustPolicy


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadline audit-verify",
        description="Check an audit bundle (threadline export --audit) offline: the "
        "checkpoint's signature, each record's inclusion proof, the session's hash chain "
        "and versions, each record's signature (docs/audit.md).",
    )
    parser.add_argument("bundle", type=Path, help="the bundle file")
    parser.add_argument(
        "--checkpoint-key",
        dest="checkpoint_keys",
        metavar="PEM",
        type=Path,
        nargs="+",
        action="extend",
        required=True,
        help="public key(s) the checkpoint may be signed by (PEM, as `threadline verify "
        "--checkpoint --trusted-key`; repeatable)",
    )
    records = parser.add_mutually_exclusive_group(required=True)
    records.add_argument(
        "--trusted-keys",
        metavar="POLICY",
        type=Path,
        help="the trust policy records must be signed under (JSON: the keys and the actors "
        "each may write; a deployment's THREADLINE_TRUSTED_KEYS, <data dir>/keys/trust.json)",
    )
    records.add_argument(
        "--unsigned",
        action="store_true",
        help="the log's records are not signed (a deployment with signing off): check no "
        "record signature",
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
        trusted = await asyncio.to_thread(load_trusted_keys, args.checkpoint_keys)
        policy = None
        if args.trusted_keys is not None:
            policy = await asyncio.to_thread(TrustPolicy.load, args.trusted_keys)
    except (OSError, BundleError, CheckpointError, KeyFileError) as exc:
        print(f"threadline audit-verify: {exc}", file=sys.stderr)
        return 2
    report = await verify_bundle(bundle, trusted, trust=policy)
    _print(args.bundle, report)
    return 1 if not report.ok or (args.strict and report.not_covered) else 0


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
    signatures = (f"{report.records} record signatures under the trust policy, "
                  if report.signatures_checked else "")  # fmt: skip
    print(f"OK: the checkpoint's signature (key {cp.key_id}), {report.covered} inclusion "
          f"proofs against its root, {signatures}the hash chain and versions "
          f"1..{report.last_version} (head {report.head_hash})")  # fmt: skip
    if not report.signatures_checked:
        print("record signatures: not checked (--unsigned)")
    if report.not_covered:
        positions = ", ".join(map(str, report.not_covered[:10]))
        more = "..." if len(report.not_covered) > 10 else ""
        print(f"NOT COVERED: {len(report.not_covered)} record(s) after the checkpoint "
              f"(stream sequences {positions}{more}): only their hash chain is checked; "
              "a later checkpoint proves them")  # fmt: skip
