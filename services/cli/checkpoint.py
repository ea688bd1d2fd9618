"""``threadline checkpoint``: sign a checkpoint of the log now; and the wiring the other
commands share (where the key and the checkpoints live, ``verify --checkpoint``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from threadline.base.config import Settings
from threadline.base.errors import StreamMissing
from threadline.events.audit import CheckpointReport, verify_checkpoint
from threadline.events.checkpoint import CheckpointError, decode_checkpoint
from threadline.events.checkpointer import Checkpointer, DirectorySink, read_leaves
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.keys import KeyFileError, ensure_signing_key, load_trusted_keys, public_path
from threadline.services.runtime.connect import open_store


def key_path(settings: Settings) -> Path:
    """The checkpoint signing key's file."""
    if settings.checkpoint_key:
        return Path(settings.checkpoint_key).expanduser()
    return settings.data_path / "keys" / "checkpoint.key"


def checkpoint_dir(settings: Settings) -> Path:
    """Where checkpoints are kept outside NATS."""
    if settings.checkpoint_dir:
        return Path(settings.checkpoint_dir).expanduser()
    return settings.data_path / "checkpoints"


async def make_checkpointer(settings: Settings, store: JetStreamEventStore) -> Checkpointer:
    """A checkpointer with the deployment's key (made if missing) and directory."""
    key = await asyncio.to_thread(ensure_signing_key, key_path(settings))
    return Checkpointer(store, key, DirectorySink(checkpoint_dir(settings)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Sign the log's tree head now, into the log and the checkpoint directory "
        "(THREADLINE_CHECKPOINT_DIR, default <data dir>/checkpoints)."
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    async with open_store(settings, user="checkpointer") as store:  # appends the checkpoint
        checkpointer = await make_checkpointer(settings, store)
        try:
            signed = await checkpointer.checkpoint(force=True)
        except CheckpointError as exc:
            print(f"threadline: {exc}", file=sys.stderr)
            return 1
    assert signed is not None  # forced
    where = checkpoint_dir(settings) / f"checkpoint-{signed.size:012d}.json"
    print(f"checkpoint: {signed.size} records, root {signed.root}, key {signed.key_id}")
    print(f"written to the log and to {where}")
    return 0


# ------------------------------------------------------------------ verify --checkpoint


async def verify_against(
    settings: Settings, file: Path, session: str | None, trusted_keys: list[Path]
) -> int:
    """``threadline verify --checkpoint FILE [--session ID]``: print the report, 0 if
    today's log extends the checkpoint (and the session's records are in it)."""
    keys = trusted_keys or [public_path(key_path(settings))]
    try:
        checkpoint = decode_checkpoint(await asyncio.to_thread(file.read_bytes))
        trusted = await asyncio.to_thread(load_trusted_keys, keys)
    except (OSError, CheckpointError, KeyFileError) as exc:
        print(f"threadline: {exc}", file=sys.stderr)
        return 2
    kept = await asyncio.to_thread(read_leaves, file.parent, checkpoint.size)
    readonly = msgspec.structs.replace(settings, allow_unsafe_stream=True)  # read what is there
    try:
        async with open_store(readonly, ensure=False) as store:  # creates nothing
            report = await verify_checkpoint(
                store, checkpoint, trusted, kept_leaves=kept, session=session
            )
    except StreamMissing as exc:
        print(
            f"TAMPERED: {exc}: the log the checkpoint signed ({checkpoint.size} records) is "
            "gone (deleted), or this is not its NATS or stream (THREADLINE_NATS_URL, "
            "THREADLINE_STREAM); nothing was created",
            file=sys.stderr,
        )
        return 1
    _print_report(file, report)
    return 0 if report.ok else 1


def _print_report(file: Path, report: CheckpointReport) -> None:
    cp = report.checkpoint
    at = datetime.fromtimestamp(cp.time / 1e6, UTC).isoformat(timespec="seconds")
    print(f"checkpoint {file}: {cp.size} records (stream sequences {cp.first_position}.."
          f"{cp.last_position}), root {cp.root}, signed {at} by key {cp.key_id}")  # fmt: skip
    print(f"the log today: {report.size} records, root {report.root}")
    inclusion = report.inclusion
    if report.ok:
        print(f"OK: the log extends the checkpoint (consistency proof from {cp.size} to "
              f"{report.size} records)")  # fmt: skip
        if inclusion is not None:
            print(f"session {inclusion.session}: {inclusion.proven} events proven in the "
                  f"checkpoint (inclusion proofs), {inclusion.after} after it")  # fmt: skip
        return
    print("TAMPERED: " + "; ".join(report.problems), file=sys.stderr)
    if report.where:
        print(f"  where: {report.where}", file=sys.stderr)
