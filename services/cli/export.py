"""``threadline export --audit SESSION [-o FILE]``: write a session's audit bundle
(events/bundle.py, docs/audit.md "Audit bundles"), checkable offline with
``threadline audit-verify``.

The proofs hang from the newest checkpoint in the checkpoint directory (or ``--checkpoint
FILE``). When the session has records after it and the deployment's checkpoint key is on
this machine, a fresh checkpoint is signed first (as ``threadline checkpoint`` does), so
the bundle covers every record; otherwise (``--no-checkpoint``, or no key here) those
records are carried as not covered.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from threadline.base.config import Settings
from threadline.events.audit import build_bundle, has_records_after
from threadline.events.bundle import BundleError, encode_bundle
from threadline.events.checkpoint import Checkpoint, CheckpointError, decode_checkpoint
from threadline.events.checkpointer import DirectorySink
from threadline.events.ids import validate_session_id
from threadline.events.keys import KeyFileError, load_trusted_keys, public_path
from threadline.events.signing import TrustPolicy
from threadline.services.cli.checkpoint import checkpoint_dir, key_path, make_checkpointer
from threadline.services.runtime.connect import open_store
from threadline.services.runtime.eventkeys import policy_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", help="the session to export")
    parser.add_argument(
        "--audit",
        action="store_true",
        help="write an audit bundle: the records, their inclusion proofs and the signed "
        "checkpoint (docs/audit.md); the only export this command makes",
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="the bundle's file (default <SESSION>.audit.json)"
    )
    parser.add_argument(
        "--checkpoint",
        metavar="FILE",
        type=Path,
        help="prove against this checkpoint (default the newest in the checkpoint directory)",
    )
    parser.add_argument(
        "--no-checkpoint",
        action="store_true",
        help="never sign a fresh checkpoint: records after the chosen one are not covered",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if not args.audit:
        print(
            "threadline export: only audit bundles are exported here (--audit); a session's "
            "raw records are GET /v1/sessions/{id}/export on the gateway",
            file=sys.stderr,
        )
        return 2
    session = validate_session_id(args.session)
    output: Path = args.output or Path(f"{session}.audit.json")
    key = key_path(settings)
    may_sign = args.checkpoint is None and not args.no_checkpoint and key.exists()
    try:
        checkpoint = await _chosen(settings, args.checkpoint)
        user = "agent" if may_sign else "projector"  # the agents' user appends checkpoints
        async with open_store(settings, user, ensure=False) as store:
            if may_sign and (
                checkpoint is None
                or await has_records_after(store, session, checkpoint.last_position)
            ):
                checkpoint = await (await make_checkpointer(settings, store)).checkpoint(force=True)
            if checkpoint is None:
                print(
                    "threadline export: no checkpoint to prove against: run `threadline "
                    "checkpoint` (or give --checkpoint FILE)",
                    file=sys.stderr,
                )
                return 2
            bundle = await build_bundle(
                store, session, checkpoint, trust=await asyncio.to_thread(_trust, settings, key)
            )
    except (BundleError, CheckpointError, KeyFileError, OSError) as exc:
        print(f"threadline export: {exc}", file=sys.stderr)
        return 1
    await asyncio.to_thread(output.write_bytes, encode_bundle(bundle))
    covered = sum(r.covered for r in bundle.records)
    print(
        f"session {session}: {len(bundle.records)} records, {covered} proven in the checkpoint "
        f"of {checkpoint.size} records (root {checkpoint.root}, key {checkpoint.key_id})"
    )
    if covered < len(bundle.records):
        print(f"  {len(bundle.records) - covered} record(s) after it are not covered yet")
    print(f"written to {output}")
    return 0


async def _chosen(settings: Settings, file: Path | None) -> Checkpoint | None:
    if file is not None:
        return decode_checkpoint(await asyncio.to_thread(file.read_bytes))
    return await DirectorySink(checkpoint_dir(settings)).latest()


def _trust(settings: Settings, key: Path) -> dict[str, object]:
    """What the exporter knows of the keys: the checkpoint key and the records' trust
    policy (information in the bundle; a verifier takes its own)."""
    trust: dict[str, object] = {}
    public = public_path(key)
    if public.exists():
        (kid,) = load_trusted_keys([public])
        trust["checkpoint_keys"] = {kid: public.read_text()}
    policy = policy_path(settings)
    if settings.signing != "off" and policy is not None:
        trust["trust_policy"] = TrustPolicy.load(policy).to_json()
    return trust
