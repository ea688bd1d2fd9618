"""Derived data in JetStream key-value buckets, beside the event stream: session-state
snapshots (:class:`KVSnapshots`, bucket ``<stream>_SNAPSHOTS``) and the owners'
session directory (:class:`KVDirectory`, bucket ``<stream>_SESSIONS``); and the ones a
deployment uses for a store (:func:`snapshot_store_for`, :func:`directory_for`).

Buckets keep one value per key (history 1), on file storage, with the stream's replica
count; they are bound (or made, when missing and the user may) on first use; a bucket
that cannot be opened is left alone for a minute, and snapshots are then simply not
used. A snapshot larger than the server's
maximum payload is not written (the session then folds from an older snapshot or from
its start: losing derived data only costs time).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from threadline.base.config import StreamSettings
from threadline.base.errors import StoreUnavailable
from threadline.events.direct import ApiError
from threadline.events.directory import Row, SessionDirectory
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.snapshots import SnapshotStore
from threadline.events.store import EventStore
from threadline.events.stream import unavailable

log = logging.getLogger(__name__)

_ERRORS: Final = (nats.errors.Error, nats.js.errors.Error, OSError)
#: how long a bucket that could not be opened is left alone
_RETRY_S: Final = 60.0
_MISSING: Final = (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError)
#: how long a bucket's key listing may take (one request per page)
_TIMEOUT_S: Final = 5.0


class _State(msgspec.Struct):
    subjects: dict[str, int] = {}


class _StreamInfo(msgspec.Struct):
    """What a key listing reads of ``STREAM.INFO``: the page of subjects and the total."""

    state: _State = msgspec.field(default_factory=_State)
    total: int = 0
    error: ApiError | None = None


_info_decoder: Final = msgspec.json.Decoder(_StreamInfo)
_encode: Final = msgspec.json.encode


def bucket_config(bucket: str, description: str, replicas: int = 1) -> KeyValueConfig:
    """A bucket as it is made: one value per key, on file storage."""
    return KeyValueConfig(
        bucket=bucket,
        description=description,
        history=1,
        storage=StorageType.FILE,
        replicas=replicas,
    )


def buckets(stream: StreamSettings) -> tuple[KeyValueConfig, KeyValueConfig]:
    """The snapshots and the sessions bucket beside ``stream`` (where the services'
    users may not make them, an admin does: deploy/README.md)."""
    return (
        bucket_config(
            f"{stream.name}_SNAPSHOTS", "Threadline session-state snapshots", stream.replicas
        ),
        bucket_config(f"{stream.name}_SESSIONS", "Threadline sessions per owner", stream.replicas),
    )


class _Bucket:
    """A KV bucket, bound when it is there, else made; opened on first use. When that
    fails (no server, a user without the permissions, see deploy/README.md) it is not
    tried again for ``_RETRY_S``, so a caller never waits on it over and over."""

    def __init__(self, nc: Client, config: KeyValueConfig) -> None:
        self.nc = nc
        self.config = config
        self._kv: KeyValue | None = None
        self._opening = asyncio.Lock()
        self._retry_at = 0.0
        self._background: asyncio.Task[None] | None = None

    def opened(self) -> KeyValue | None:
        """The bucket if it is open; else None, and it is opened in the background."""
        idle = self._background is None or self._background.done()
        if self._kv is None and idle and self._may_try():
            self._background = asyncio.create_task(self.try_open())
        return self._kv

    async def try_open(self) -> None:
        """Open the bucket now if it can be (a failure is logged; tried again later)."""
        with contextlib.suppress(StoreUnavailable):
            await self.kv()

    async def kv(self) -> KeyValue:
        if self._kv is not None:
            return self._kv
        async with self._opening:
            if self._kv is None:
                if not self._may_try():
                    raise StoreUnavailable(f"bucket {self.config.bucket} is unavailable")
                try:
                    self._kv = await self._open()
                except _ERRORS as exc:
                    self._retry_at = time.monotonic() + _RETRY_S
                    log.warning("bucket %s unavailable, not tried again for %.0f s: %s",
                                self.config.bucket, _RETRY_S, exc)  # fmt: skip
                    raise StoreUnavailable(f"bucket {self.config.bucket}: {exc}") from None
            return self._kv

    def _may_try(self) -> bool:
        return time.monotonic() >= self._retry_at

    async def _open(self) -> KeyValue:
        js = self.nc.jetstream()
        try:
            return await js.key_value(self.config.bucket)
        except nats.js.errors.BucketNotFoundError:
            return await js.create_key_value(self.config)

    async def get(self, key: str) -> bytes | None:
        with unavailable(f"{self.config.bucket} {key}"), contextlib.suppress(*_MISSING):
            return (await (await self.kv()).get(key)).value or None
        return None

    async def put(self, key: str, data: bytes) -> None:
        with unavailable(f"{self.config.bucket} {key}"):
            await (await self.kv()).put(key, data)

    async def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``: the bucket stream's subjects under it, listed by the
        server (``STREAM.INFO`` with a subject filter, page by page). Not a watcher:
        nats-py's watcher may signal "nothing stored" before the entries it is being sent
        have reached it, and a listing came back empty under load."""
        await self.kv()  # the bucket exists (made when missing and allowed)
        stream, subjects = f"KV_{self.config.bucket}", f"$KV.{self.config.bucket}."
        found: list[str] = []
        with unavailable(f"{self.config.bucket} {prefix}"):
            while True:
                request = {"subjects_filter": f"{subjects}{prefix}.>", "offset": len(found)}
                reply = await self.nc.request(
                    f"$JS.API.STREAM.INFO.{stream}", _encode(request), timeout=_TIMEOUT_S
                )
                info = _info_decoder.decode(reply.data)
                if info.error is not None:
                    raise StoreUnavailable(f"{stream}: {info.error.description}")
                page = [subject.removeprefix(subjects) for subject in info.state.subjects]
                found += page
                if not page or len(found) >= info.total:
                    return found


class KVSnapshots:
    """:class:`~threadline.events.snapshots.SnapshotStore` over a KV bucket, one key per
    session (its id)."""

    def __init__(self, nc: Client, config: KeyValueConfig) -> None:
        self.bucket = _Bucket(nc, config)

    async def open(self) -> None:
        await self.bucket.try_open()  # snapshots wait if it fails

    async def load(self, session: str) -> bytes | None:
        """None until the bucket is open (opening it never holds up a read)."""
        if self.bucket.opened() is None:
            return None
        return await self.bucket.get(session)

    async def save(self, session: str, data: bytes) -> None:
        await self.bucket.put(session, data)


class KVDirectory:
    """:class:`~threadline.events.directory.SessionDirectory` over a KV bucket: a row is
    the key ``r.<owner digest>.<created_at>.<session>``, so an owner's rows are read by
    subject filter, without anyone else's; the checkpoint is the key ``checkpoint``."""

    def __init__(self, nc: Client, config: KeyValueConfig) -> None:
        self.bucket = _Bucket(nc, config)
        self._saved = 0

    @staticmethod
    def _prefix(owner: str) -> str:
        return "r." + hashlib.sha256(owner.encode()).hexdigest()[:32]

    def _key(self, owner: str, row: Row) -> str:
        return f"{self._prefix(owner)}.{row.created_at}.{row.session}"

    async def put(self, owner: str, row: Row, data: bytes) -> None:
        await self.bucket.put(self._key(owner, row), data)

    async def rows(self, owner: str) -> list[Row]:
        keys = await self.bucket.keys(self._prefix(owner))  # r.<owner>.<created_at>.<session>
        return [Row(int(at), session) for _, _, at, session in (k.split(".", 3) for k in keys)]

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
        return KVSnapshots(store.nc, buckets(store.settings)[0])
    return None


def directory_for(store: EventStore) -> SessionDirectory | None:
    """Where the owners' session lists derived from ``store`` are kept: a KV bucket
    beside a JetStream stream; none for other stores (the caller keeps one in memory)."""
    if isinstance(store, JetStreamEventStore):
        return KVDirectory(store.nc, buckets(store.settings)[1])
    return None
