"""Derived data in JetStream key-value buckets, beside the event stream: session-state
snapshots (:class:`KVSnapshots`, bucket ``<stream>_SNAPSHOTS``) and the owners'
session directory (:class:`KVDirectory`, bucket ``<stream>_SESSIONS``); and the ones a
deployment uses for a store (:func:`snapshot_store_for`, :func:`directory_for`).

Buckets keep one value per key (history 1), on file storage, with the stream's replica
count; they are made (or bound) on first use. A snapshot larger than the server's
maximum payload is not written (the session then folds from an older snapshot or from
its start: losing derived data only costs time).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from threadline.base.errors import StoreUnavailable
from threadline.events.directory import Row, SessionDirectory
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.snapshots import SnapshotStore
from threadline.events.store import EventStore

_ERRORS: Final = (nats.errors.Error, nats.js.errors.Error, OSError)
_MISSING: Final = (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError)


class _Bucket:
    """A KV bucket made (or bound, when it is there) on first use."""

    def __init__(self, nc: Client, bucket: str, description: str, replicas: int) -> None:
        self.nc = nc
        self.config = KeyValueConfig(
            bucket=bucket,
            description=description,
            history=1,
            storage=StorageType.FILE,
            replicas=replicas,
        )
        self._kv: KeyValue | None = None
        self._opening = asyncio.Lock()

    async def kv(self) -> KeyValue:
        async with self._opening:
            if self._kv is None:
                js = self.nc.jetstream()
                try:
                    self._kv = await js.create_key_value(self.config)
                except nats.js.errors.BadRequestError:  # there, with other settings
                    self._kv = await js.key_value(self.config.bucket)
            return self._kv

    async def get(self, key: str) -> bytes | None:
        try:
            entry = await (await self.kv()).get(key)
        except _MISSING:
            return None
        except _ERRORS as exc:
            raise StoreUnavailable(f"{self.config.bucket} {key}: {exc}") from None
        return entry.value or None

    async def put(self, key: str, data: bytes) -> None:
        try:
            await (await self.kv()).put(key, data)
        except _ERRORS as exc:
            raise StoreUnavailable(f"{self.config.bucket} {key}: {exc}") from None

    async def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``, filtered by the server (nats-py's ``keys()`` reads
        every key of the bucket and filters them itself)."""
        keys: list[str] = []
        try:
            watcher = await (await self.kv()).watch(
                f"{prefix}.>", ignore_deletes=True, meta_only=True
            )
            try:
                async for entry in watcher:
                    if entry is None:  # the end of what is stored now
                        break
                    keys.append(entry.key)
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
        except _ERRORS as exc:
            raise StoreUnavailable(f"{self.config.bucket} {prefix}: {exc}") from None
        return keys


class KVSnapshots:
    """:class:`~threadline.events.snapshots.SnapshotStore` over a KV bucket, one key per
    session (its id)."""

    def __init__(self, nc: Client, bucket: str, *, replicas: int = 1) -> None:
        self.bucket = _Bucket(nc, bucket, "Threadline session-state snapshots", replicas)

    async def load(self, session: str) -> bytes | None:
        return await self.bucket.get(session)

    async def save(self, session: str, data: bytes) -> None:
        await self.bucket.put(session, data)


class KVDirectory:
    """:class:`~threadline.events.directory.SessionDirectory` over a KV bucket: a row is
    the key ``r.<owner digest>.<created_at>.<session>``, so an owner's rows are read by
    subject filter, without anyone else's; the checkpoint is the key ``checkpoint``."""

    def __init__(self, nc: Client, bucket: str, *, replicas: int = 1) -> None:
        self.bucket = _Bucket(nc, bucket, "Threadline sessions per owner", replicas)
        self._saved = 0

    @staticmethod
    def _prefix(owner: str) -> str:
        return "r." + hashlib.sha256(owner.encode()).hexdigest()[:32]

    def _key(self, owner: str, row: Row) -> str:
        return f"{self._prefix(owner)}.{row.created_at}.{row.session}"

    async def put(self, owner: str, row: Row, data: bytes) -> None:
        await self.bucket.put(self._key(owner, row), data)

    async def rows(self, owner: str) -> list[Row]:
        rows = []
        for key in await self.bucket.keys(self._prefix(owner)):
            _, _, at, session = key.split(".", 3)
            rows.append(Row(int(at), session))
        return rows

    async def get(self, owner: str, row: Row) -> bytes | None:
        return await self.bucket.get(self._key(owner, row))

    async def checkpoint(self) -> int:
        data = await self.bucket.get("checkpoint")
        self._saved = max(self._saved, int(data or b"0"))
        return self._saved

    async def save_checkpoint(self, position: int) -> None:
        if position > self._saved:  # never back: another gateway may be further on
            await self.bucket.put("checkpoint", b"%d" % position)
            self._saved = position


def snapshot_store_for(store: EventStore) -> SnapshotStore | None:
    """Where ``store``'s session snapshots are kept: a KV bucket beside a JetStream
    stream; none for other stores (an in-memory log is as quick to fold as to load)."""
    if isinstance(store, JetStreamEventStore):
        s = store.settings
        return KVSnapshots(store.nc, f"{s.name}_SNAPSHOTS", replicas=s.replicas)
    return None


def directory_for(store: EventStore) -> SessionDirectory | None:
    """Where the owners' session lists derived from ``store`` are kept: a KV bucket
    beside a JetStream stream; none for other stores (the caller keeps one in memory)."""
    if isinstance(store, JetStreamEventStore):
        s = store.settings
        return KVDirectory(store.nc, f"{s.name}_SESSIONS", replicas=s.replicas)
    return None
