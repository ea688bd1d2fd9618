"""The checkpointer: signs the log's tree head, on demand and periodically, and writes it
to the log and to a place outside NATS (a :class:`CheckpointSink`; by default a
directory, :class:`DirectorySink`).

It keeps the tree as a :class:`~threadline.events.merkle.Frontier` and reads only the
records appended since its last checkpoint. On its first checkpoint it reads the whole
log and refuses to sign anything if the log no longer extends the newest checkpoint the
sink holds: a rewritten history is never re-signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import Final, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from threadline.base.aio import cancelled_meanwhile
from threadline.events import codec
from threadline.events.checkpoint import (
    Checkpoint,
    CheckpointError,
    decode_checkpoint,
    encode_checkpoint,
    sign,
)
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.merkle import Frontier, record_leaf
from threadline.events.store import Stored, checkpoint_subject, is_checkpoint_subject
from threadline.events.stream import unavailable

log = logging.getLogger(__name__)

LEAVES_FILE: Final = "leaves"
_HASH: Final = 32


async def log_records(
    store: JetStreamEventStore, *, after: int = 0
) -> AsyncGenerator[Stored, None]:
    """Every record of the log (all sessions and checkpoints) after ``after``, in stream
    order, up to the newest now: the tree's leaves, in order."""
    if await store.last_position() <= after:
        return
    async for stored in store.follow_raw([f"{store.prefix}.>"], after=after, until_end=True):
        yield stored


def leaf_of(stored: Stored) -> bytes:
    """A record's leaf hash: RFC 9162's over the record's chain hash."""
    return record_leaf(codec.record_hash(stored.data))


class CheckpointSink(Protocol):
    """Where checkpoints are kept outside the log."""

    async def put(self, checkpoint: Checkpoint, leaves: Sequence[bytes], start: int) -> None:
        """Keep ``checkpoint``; ``leaves`` are the tree's leaf hashes from index ``start``
        up to its size (a sink may keep them, to tell later where a log changed)."""

    async def latest(self) -> Checkpoint | None:
        """The newest checkpoint kept (None: none yet)."""


class DirectorySink:
    """One file per checkpoint, ``checkpoint-<size>.json`` (the checkpoint as JSON), and
    ``leaves``: the leaf hashes of the tree in log order, 32 bytes each, appended."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def put(self, checkpoint: Checkpoint, leaves: Sequence[bytes], start: int) -> None:
        await asyncio.to_thread(self._put, checkpoint, b"".join(leaves), start)

    def _put(self, checkpoint: Checkpoint, leaves: bytes, start: int) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LEAVES_FILE, "ab") as fh:
            have = fh.tell() // _HASH
            if start <= have:  # keep what is there; add what is new
                fh.truncate(have * _HASH)
                fh.write(leaves[(have - start) * _HASH :])
        name = self.path / f"checkpoint-{checkpoint.size:012d}.json"
        fresh = name.with_name(f".{name.name}.tmp")
        fresh.write_bytes(encode_checkpoint(checkpoint) + b"\n")
        fresh.replace(name)

    async def latest(self) -> Checkpoint | None:
        return await asyncio.to_thread(self._latest)

    def _latest(self) -> Checkpoint | None:
        files = sorted(self.path.glob("checkpoint-*.json"))
        return decode_checkpoint(files[-1].read_bytes()) if files else None


def read_leaves(directory: Path, size: int) -> list[bytes] | None:
    """The first ``size`` leaf hashes a :class:`DirectorySink` kept (None: fewer kept)."""
    try:
        with open(directory / LEAVES_FILE, "rb") as fh:
            data = fh.read(size * _HASH)
    except OSError:
        return None
    if len(data) < size * _HASH:
        return None
    return [data[i : i + _HASH] for i in range(0, len(data), _HASH)]


class Checkpointer:
    """Signs tree heads of one store's log with ``key``, into ``sink`` and the log."""

    def __init__(self, store: JetStreamEventStore, key: Ed25519PrivateKey, sink: CheckpointSink):
        self.store, self.key, self.sink = store, key, sink
        self.frontier = Frontier()
        self.first_position = self.last_position = 0
        self._pending: list[bytes] = []  # leaves not given to the sink yet
        self._changed = False  # a record other than a checkpoint since the last one
        self._last: Checkpoint | None = None
        #: the sink's newest checkpoint until the log is seen to extend it
        self._unchecked: Checkpoint | None = None
        self._started = False
        self._lock = asyncio.Lock()

    async def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        """Sign the tree head of the log as it is now, unless nothing but checkpoints was
        appended since the last one (``force``: sign anyway). Raises
        :class:`CheckpointError` if the log no longer extends the sink's newest one."""
        async with self._lock:
            if not self._started:
                self._last = self._unchecked = await self.sink.latest()
                self._started = True
                cancelled_meanwhile()
            await self._catch_up()
            if not force and (not self._changed or self.frontier.size == 0):
                return None
            head = Checkpoint(
                log=self.store.settings.name,
                size=self.frontier.size,
                root=self.frontier.root().hex(),
                first_position=self.first_position,
                last_position=self.last_position,
                time=time.time_ns() // 1000,
                key_id="",
            )
            signed = sign(head, self.key)
            await self.sink.put(signed, self._pending, self.frontier.size - len(self._pending))
            self._pending = []
            cancelled_meanwhile()
            await self._publish(signed)
            cancelled_meanwhile()
            self._last, self._changed = signed, False
            return signed

    async def _catch_up(self) -> None:
        reading = log_records(self.store, after=self.last_position)
        async with contextlib.aclosing(reading) as records:
            async for stored in records:
                cancelled_meanwhile()
                if self.frontier.size == 0:
                    self.first_position = stored.position
                leaf = leaf_of(stored)
                self.frontier.append(leaf)
                self._pending.append(leaf)
                self.last_position = stored.position
                last = self._unchecked  # checked once, wherever a read stopped before
                if last is not None and self.frontier.size == last.size:
                    if self.frontier.root().hex() != last.root:
                        raise CheckpointError(_diverged(last))
                    self._unchecked = None
                if self._last is None or self.frontier.size > self._last.size:
                    self._changed = self._changed or not is_checkpoint_subject(stored.subject)
        cancelled_meanwhile()
        if (last := self._unchecked) is not None:
            raise CheckpointError(
                f"{_diverged(last)}: the log holds {self.frontier.size} records, "
                f"the checkpoint {last.size}"
            )

    async def _publish(self, checkpoint: Checkpoint) -> None:
        js = self.store.nc.jetstream()
        headers = {"Nats-Msg-Id": f"checkpoint:{checkpoint.size}:{checkpoint.root[:16]}"}
        with unavailable("publishing a checkpoint"):
            await js.publish(
                checkpoint_subject(self.store.prefix),
                encode_checkpoint(checkpoint),
                stream=self.store.settings.name,
                headers=headers,
            )

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Checkpoint every ``interval_s`` seconds (when the log changed) until ``stop``
        is set; a checkpoint under way is finished first."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
                return
            try:
                signed = await self.checkpoint()
            except CheckpointError as exc:
                log.error("checkpointing stopped: %s", exc)
                return
            except Exception:  # the log is unreachable for now: try again next time
                log.exception("checkpoint failed; trying again in %.0f s", interval_s)
            else:
                if signed is not None:
                    log.info("checkpoint: %d records, root %s", signed.size, signed.root)


def _diverged(last: Checkpoint) -> str:
    return (
        f"the log no longer extends the checkpoint of {last.size} records (root "
        f"{last.root[:16]}...); refusing to sign over it: run `threadline verify "
        "--checkpoint` on that checkpoint's file"
    )


@contextlib.asynccontextmanager
async def running_checkpointer(
    checkpointer: Checkpointer, interval_s: float
) -> AsyncIterator[None]:
    """Run :meth:`Checkpointer.run` in the background while the context is open."""
    stop = asyncio.Event()
    task = asyncio.create_task(checkpointer.run(interval_s, stop), name="checkpointer")
    try:
        yield
    finally:
        stop.set()
        await task
