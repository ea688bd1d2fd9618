"""Snapshots in a JetStream key-value bucket (:class:`KVSnapshots`), and the snapshot
store a deployment's session cache uses (:func:`snapshot_store_for`).

The bucket (``<stream>_SNAPSHOTS``) keeps one value per session (history 1, file
storage, the stream's replica count), keyed by the session id. A value larger than the
server's maximum payload is not written (the session then folds from an older snapshot
or from its start: derived data, losing it only costs time).
"""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from threadline.base.errors import StoreUnavailable
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.snapshots import SnapshotStore
from threadline.events.store import EventStore


def bucket_name(stream: str) -> str:
    return f"{stream}_SNAPSHOTS"


class KVSnapshots:
    """:class:`~threadline.events.snapshots.SnapshotStore` over a KV bucket, made (or
    bound) on first use."""

    def __init__(self, nc: Client, bucket: str, *, replicas: int = 1) -> None:
        self.nc = nc
        self.config = KeyValueConfig(
            bucket=bucket,
            description="Threadline session-state snapshots (derived data)",
            history=1,
            storage=StorageType.FILE,
            replicas=replicas,
        )
        self._kv: KeyValue | None = None
        self._opening = asyncio.Lock()

    async def _bucket(self) -> KeyValue:
        async with self._opening:
            if self._kv is None:
                js = self.nc.jetstream()
                try:
                    self._kv = await js.create_key_value(self.config)
                except nats.js.errors.BadRequestError:  # there, with other settings
                    self._kv = await js.key_value(self.config.bucket)
            return self._kv

    async def load(self, session: str) -> bytes | None:
        try:
            entry = await (await self._bucket()).get(session)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise StoreUnavailable(f"snapshot of {session}: {exc}") from None
        return entry.value or None

    async def save(self, session: str, data: bytes) -> None:
        try:
            await (await self._bucket()).put(session, data)
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            raise StoreUnavailable(f"snapshot of {session}: {exc}") from None


def snapshot_store_for(store: EventStore) -> SnapshotStore | None:
    """Where ``store``'s session snapshots are kept: a KV bucket beside a JetStream
    stream; none for other stores (an in-memory log is as quick to fold as to load)."""
    if isinstance(store, JetStreamEventStore):
        settings = store.settings
        return KVSnapshots(store.nc, bucket_name(settings.name), replicas=settings.replicas)
    return None
