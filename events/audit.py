"""The NATS side of auditing: ``verify --checkpoint`` and making audit bundles.

``verify --checkpoint``: does today's log extend a signed checkpoint, and are a
session's events in it? Three checks, each RFC 9162's: the checkpoint's signature
against the trusted keys; a consistency proof from the checkpoint's size to today's log
(the first ``size`` records are exactly the ones signed, so nothing before the
checkpoint was deleted, truncated, rewritten or reordered); inclusion proofs of a
session's records in the checkpoint's tree. When the log does not extend the checkpoint
the report says where: the first leaf that differs from the leaf hashes kept beside the
checkpoint (:class:`~threadline.events.checkpointer.DirectorySink`), with today's stream
sequence, session and version there.

Making an audit bundle (events/bundle.py) of one session: the log is read once: every
record's leaf hash (the checkpoint's tree is rebuilt from the first ``size`` of them and
must hash to the signed root, else the log no longer extends the checkpoint and no proof
could be honest), and the session's records with their leaf indexes. Each record inside
the checkpoint gets its inclusion proof; those after it are carried as not covered.
"""

from __future__ import annotations

import base64
import contextlib
import time

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from threadline.events import codec
from threadline.events.bundle import Bundle, BundleError, BundleRecord
from threadline.events.checkpoint import Checkpoint, check_signature
from threadline.events.checkpointer import leaf_of, log_records
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.merkle import MerkleTree, verify_consistency, verify_inclusion
from threadline.events.store import Stored, is_checkpoint_subject


class Inclusion(msgspec.Struct, frozen=True):
    """A session's records proven in the checkpoint's tree (``proven``), the ones after
    it (not covered yet) and the positions whose proof failed."""

    session: str
    proven: int
    after: int
    failed: tuple[int, ...]


class CheckpointReport(msgspec.Struct, frozen=True):
    checkpoint: Checkpoint
    size: int  # the log's records today
    root: str
    problems: tuple[str, ...]
    where: str = ""
    inclusion: Inclusion | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


class _Log:
    """Today's log: the tree, and each leaf's stream position and subject."""

    def __init__(self) -> None:
        self.tree = MerkleTree()
        self.positions: list[int] = []
        self.subjects: list[str] = []

    async def read(self, store: JetStreamEventStore) -> None:
        async for stored in log_records(store):
            self.tree.append(leaf_of(stored))
            self.positions.append(stored.position)
            self.subjects.append(stored.subject)

    def session_of(self, index: int) -> str:
        subject = self.subjects[index]
        return "(a checkpoint)" if is_checkpoint_subject(subject) else subject.rsplit(".", 2)[-2]


async def verify_checkpoint(
    store: JetStreamEventStore,
    checkpoint: Checkpoint,
    trusted: dict[str, Ed25519PublicKey],
    *,
    kept_leaves: list[bytes] | None = None,
    session: str | None = None,
) -> CheckpointReport:
    """Check today's log of ``store`` against ``checkpoint`` (and, given ``session``,
    that session's records). ``kept_leaves``: the leaf hashes kept with it, if any."""
    today = _Log()
    await today.read(store)
    tree, size = today.tree, checkpoint.size
    report = CheckpointReport(checkpoint, tree.size, tree.root().hex(), ())
    bad_signature = check_signature(checkpoint, trusted)
    if bad_signature is not None:
        return msgspec.structs.replace(report, problems=(f"the checkpoint: {bad_signature}",))
    problems: list[str] = []
    if (other_log := _other_log(checkpoint, store)) is not None:
        problems.append(other_log)
    if tree.size < size:
        problems.append(
            f"the log holds {tree.size} records, the checkpoint {size}: records were deleted "
            "or the log was truncated"
        )
    elif not verify_consistency(
        size, tree.size, bytes.fromhex(checkpoint.root), tree.root(), tree.consistency_proof(size)
    ):
        problems.append(
            f"the log's first {size} records are not the ones the checkpoint signed: history "
            "before it was rewritten, deleted, reordered or re-created"
        )
    kept = _kept_tree(checkpoint, kept_leaves)
    where = await _where(store, today, checkpoint, kept) if problems else ""
    # proofs come from the checkpoint's own tree when its leaves were kept, else today's
    prover = kept if kept is not None else today.tree
    inclusion = _inclusion(today, prover, checkpoint, session) if session is not None else None
    if inclusion is not None and inclusion.failed:
        problems.append(
            f"session {session}: {len(inclusion.failed)} record(s) are not in the checkpoint's "
            f"tree, the first at stream sequence {inclusion.failed[0]}"
        )
    return msgspec.structs.replace(
        report, problems=tuple(problems), where=where, inclusion=inclusion
    )


def _other_log(checkpoint: Checkpoint, store: JetStreamEventStore) -> str | None:
    """The problem when ``checkpoint`` is of another log than ``store``'s, else None."""
    if checkpoint.log == store.settings.name:
        return None
    return f"the checkpoint is of the log {checkpoint.log!r}, not {store.settings.name!r}"


def _kept_tree(checkpoint: Checkpoint, leaves: list[bytes] | None) -> MerkleTree | None:
    """The checkpoint's tree from the leaf hashes kept with it, if they hash to its root."""
    if leaves is None or len(leaves) < checkpoint.size:
        return None
    tree = MerkleTree(leaves[: checkpoint.size])
    return tree if tree.root().hex() == checkpoint.root else None


def _inclusion(today: _Log, prover: MerkleTree, checkpoint: Checkpoint, session: str) -> Inclusion:
    """Each of the session's records today, proven a leaf of the checkpoint's tree (the
    proof built from ``prover``, checked against the signed root alone)."""
    root, size = bytes.fromhex(checkpoint.root), checkpoint.size
    proven = after = 0
    failed: list[int] = []
    for index in range(today.tree.size):
        if today.session_of(index) != session:
            continue
        if index >= size:
            after += 1
            continue
        proof = prover.inclusion_proof(index, size) if size <= prover.size else []
        leaf = today.tree.leaves[index]
        if verify_inclusion(index, size, leaf, proof, root):
            proven += 1
        else:
            failed.append(today.positions[index])
    return Inclusion(session, proven, after, tuple(failed))


async def _where(
    store: JetStreamEventStore, today: _Log, checkpoint: Checkpoint, kept: MerkleTree | None
) -> str:
    """Where today's log first differs from the checkpoint's, as far as can be told."""
    notes: list[str] = []
    first = today.positions[0] if today.positions else None
    if first is not None and first > checkpoint.first_position:
        notes.append(
            f"the log now starts at stream sequence {first}; at the checkpoint it started at "
            f"{checkpoint.first_position}: the records before {first} are gone (truncated)"
        )
    if kept is None:
        notes.append("(no leaf hashes kept with the checkpoint match it: the first differing "
                     "record cannot be named)")  # fmt: skip
        return "; ".join(notes)
    # the first kept leaf that today's log holds otherwise, or not at all
    differs = (i for i, leaf in enumerate(kept.leaves) if today.tree.leaves[i : i + 1] != [leaf])
    index = next(differs, None)
    if index is None:
        return "; ".join(notes)
    contiguous = checkpoint.last_position - checkpoint.first_position + 1 == checkpoint.size
    then = f"stream sequence {checkpoint.first_position + index} at the checkpoint"
    was = f" ({then})" if contiguous else ""
    if index >= today.tree.size:
        notes.append(f"first differing record: leaf {index}{was} is missing: the log ends "
                     "before it")  # fmt: skip
        return "; ".join(notes)
    position = today.positions[index]
    session = today.session_of(index)
    version = await _claimed_version(store, position, session)
    notes.append(
        f"first differing record: leaf {index}, stream sequence {position} (session {session}"
        + (f", version {version}" if version is not None else "")
        + (f"; {then})" if contiguous else ")")
    )
    return "; ".join(notes)


async def _claimed_version(store: JetStreamEventStore, position: int, session: str) -> int | None:
    async with contextlib.aclosing(log_records(store, after=position - 1)) as records:
        async for stored in records:
            return codec.claimed_version(stored.data, session)
    return None


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
    if (other_log := _other_log(checkpoint, store)) is not None:
        raise BundleError(other_log)
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
