"""Making an audit bundle (events/bundle.py) of one session from the log.

The log is read once: every record's leaf hash (the checkpoint's tree is rebuilt from
the first ``size`` of them and must hash to the signed root, else the log no longer
extends the checkpoint and no proof could be honest), and the session's records with
their leaf indexes. Each record inside the checkpoint gets its inclusion proof; those
after it are carried as not covered.
"""

from __future__ import annotations

import base64
import contextlib
import time

from threadline.events.bundle import Bundle, BundleError, BundleRecord
from threadline.events.checkpoint import Checkpoint
from threadline.events.checkpointer import leaf_of, log_records
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.merkle import MerkleTree
from threadline.events.store import Stored


async def has_records_after(store: JetStreamEventStore, session: str, position: int) -> bool:
    """Whether ``session`` has a record after stream sequence ``position`` (one the
    checkpoint ending there does not cover)."""
    if await store.last_position() <= position:
        return False
    subjects = [f"{store.prefix}.{session}.*"]
    tail = store.follow_raw(subjects, after=position, until_end=True)
    async with contextlib.aclosing(tail):
        async for _ in tail:
            return True
    return False


async def build_bundle(
    store: JetStreamEventStore,
    session: str,
    checkpoint: Checkpoint,
    *,
    trust: dict[str, object] | None = None,
) -> Bundle:
    """The bundle of ``session``'s records as the log holds them now, proven against
    ``checkpoint``. Raises :class:`BundleError` when the session has no records or the
    log does not extend the checkpoint."""
    if checkpoint.log != store.settings.name:
        raise BundleError(
            f"the checkpoint is of the log {checkpoint.log!r}, not {store.settings.name!r}"
        )
    size = checkpoint.size
    tree = MerkleTree()
    mine: list[tuple[int, Stored]] = []
    prefix = f"{store.prefix}.{session}."
    async for stored in log_records(store):
        if stored.subject.startswith(prefix):
            mine.append((tree.size, stored))
        tree.append(leaf_of(stored))
    if not mine:
        raise BundleError(f"session {session}: no events")
    if tree.size < size or tree.root(size).hex() != checkpoint.root:
        raise BundleError(
            f"the log does not extend the checkpoint of {size} records (root "
            f"{checkpoint.root[:16]}...): no honest proof can be made; run `threadline "
            "verify --checkpoint` on it to see where the log differs"
        )
    records = [
        BundleRecord(
            position=stored.position,
            subject=stored.subject,
            record=base64.b64encode(stored.data).decode(),
            leaf_index=index if index < size else None,
            proof=[h.hex() for h in tree.inclusion_proof(index, size)] if index < size else None,
        )
        for index, stored in mine
    ]
    return Bundle(
        session=session,
        log=store.settings.name,
        exported_at=time.time_ns() // 1000,
        checkpoint=checkpoint,
        records=records,
        trust=dict(trust or {}),
    )
