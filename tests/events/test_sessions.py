"""The session cache (events/sessions.py) and its snapshots (events/snapshots.py): a hit
reads only the events after the cached version, the cache is bounded, snapshots are
written every so many events and checked against the log when loaded. Reads are counted
by a store that counts what it yields (a MemoryEventStore, not a mock)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import nats
import pytest

from tests.agent.longsession import build_session, recorded_turn
from tests.conftest import fresh_stream
from threadline.base.errors import SessionNotFound, StoreUnavailable
from threadline.events.fold import SessionState, fold
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.kv import KVSnapshots, bucket_config, snapshot_store_for
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import CancelRequested, SessionStarted, UserMessage
from threadline.events.sessions import SessionCache
from threadline.events.snapshots import (
    MemorySnapshots,
    Snapshot,
    encode_snapshot,
)
from threadline.events.store import EventStore, NewEvent, Recorded


class CountingStore(MemoryEventStore):
    """A MemoryEventStore that counts the records its reads yield."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.read_count = 0

    async def _read(
        self, session: str, from_version: int, to_version: int | None, after: int
    ) -> AsyncGenerator[Recorded, None]:
        async for rec in super()._read(session, from_version, to_version, after):
            self.read_count += 1
            yield rec

    def reads(self) -> int:
        """Records read since the last call."""
        count, self.read_count = self.read_count, 0
        return count


async def start(store: EventStore, session: str) -> None:
    await store.append(session, NewEvent(event=SessionStarted(owner="alice")), expected_version=0)


async def whole(store: EventStore, session: str) -> SessionState:
    return fold(await store.load(session))


async def test_a_hit_reads_only_the_new_events() -> None:
    store = CountingStore()
    await build_session(store, "s1", 20)
    cache = SessionCache(store)
    store.reads()
    first = await cache.get("s1")
    assert store.reads() == 1 + 20 * 4 and first == await whole(store, "s1")
    store.reads()
    await store.append("s1", recorded_turn(20))
    second = await cache.get("s1")
    assert store.reads() == 4  # the new turn's events, nothing before them
    assert second == await whole(store, "s1")
    store.reads()
    assert await cache.get("s1") == second and store.reads() == 0
    assert (cache.stats.hits, cache.stats.misses) == (2, 1)


async def test_records_appended_here_are_folded_without_a_read() -> None:
    store = CountingStore()
    cache = SessionCache(store)
    (first,) = await store.append(
        "s1", NewEvent(event=SessionStarted(owner="alice")), expected_version=0
    )
    cache.appended(first)  # a new session: kept from its first record
    (second,) = await store.append("s1", NewEvent(event=UserMessage(text="hi"), turn="t1"))
    cache.appended(second)  # follows on: folded
    (third,) = await store.append("s1", NewEvent(event=UserMessage(text="yo"), turn="t2"))
    cache.appended(first)  # not the next one: ignored
    store.reads()
    state = await cache.get("s1")
    assert store.reads() == 1  # only the record it was not told of
    assert state == await whole(store, "s1") and third.version == state.version == 3
    assert (cache.stats.hits, cache.stats.misses) == (1, 0)
    cache.appended(second)  # already folded: ignored
    store.reads()
    assert await cache.get("s1") == state and store.reads() == 0


async def test_a_new_turn_on_a_1000_turn_session_reads_only_its_events() -> None:
    store = CountingStore()
    await build_session(store, "long", 1000, tool_every=10)
    cache = SessionCache(store)
    await cache.get("long")
    for index in range(1000, 1005):
        await store.append("long", recorded_turn(index))
        store.reads()
        state = await cache.get("long")
        assert store.reads() == 4
        assert len(state.turns) == index + 1 and state.is_terminal(f"h{index:04d}")
    assert state == await whole(store, "long")


async def test_callers_get_their_own_state() -> None:
    """A caller may advance its state; ended turns are shared between copies, and the
    one change an ended turn can get (a late stop request) lands in a copy of it."""
    store = MemoryEventStore()
    await build_session(store, "s1", 2)
    cache = SessionCache(store)
    mine, other = await cache.get("s1"), await cache.get("s1")
    assert mine.turns["h0000"] is other.turns["h0000"]  # shared, not copied
    late, asked = await store.append(
        "s1",
        [
            NewEvent(event=CancelRequested(), turn="h0000"),
            NewEvent(event=UserMessage(text="more"), turn="t-new"),
        ],
    )
    fold([late, asked], mine)
    assert mine.turns["h0000"].cancel_requested and "t-new" in mine.turns
    assert not other.turns["h0000"].cancel_requested and "t-new" not in other.turns
    now = await cache.get("s1")
    assert now == await whole(store, "s1") and now == mine
    assert not other.turns["h0000"].cancel_requested


async def test_concurrent_gets_apply_each_event_once() -> None:
    store = MemoryEventStore()
    await build_session(store, "s1", 3)
    cache = SessionCache(store)
    await cache.get("s1")
    await store.append("s1", recorded_turn(3))
    states = await asyncio.gather(*(cache.get("s1") for _ in range(5)))
    expected = await whole(store, "s1")
    assert all(state == expected for state in states)


async def test_the_least_recently_used_session_is_evicted() -> None:
    store = CountingStore()
    for name in ("a", "b", "c"):
        await build_session(store, name, 2)
    cache = SessionCache(store, max_sessions=2)
    await cache.get("a")
    await cache.get("b")
    await cache.get("a")  # b is now the least recently used
    await cache.get("c")
    assert "a" in cache and "c" in cache and "b" not in cache and len(cache) == 2
    store.reads()
    await cache.get("b")  # cold again: folded from the start
    assert store.reads() == 1 + 2 * 4


async def test_an_unknown_session_is_not_found() -> None:
    cache = SessionCache(MemoryEventStore())
    with pytest.raises(SessionNotFound):
        await cache.get("nobody")
    assert len(cache) == 0


async def test_a_log_that_does_not_follow_on_is_folded_again() -> None:
    """A cached state whose log was replaced (same session id, another history) is
    not advanced onto the wrong events."""
    store = MemoryEventStore()
    await build_session(store, "s1", 1)
    cache = SessionCache(store)
    await cache.get("s1")
    other = MemoryEventStore()
    await start(other, "s1")
    for _ in range(6):
        await other.append("s1", NewEvent(event=UserMessage(text="elsewhere")))
    cache.store = other
    assert await cache.get("s1") == await whole(other, "s1")


# --------------------------------------------------------------------------- snapshots


async def test_snapshots_are_written_every_k_events_and_start_a_cold_cache() -> None:
    store = CountingStore()
    snapshots = MemorySnapshots()
    await build_session(store, "s1", 60)  # 241 events
    warm = SessionCache(store, snapshots=snapshots, snapshot_every=100)
    await warm.get("s1")
    await warm.flush()
    assert snapshots.saved == 1 and warm.stats.snapshots_saved == 1
    await store.append("s1", recorded_turn(60))  # 4 more: not enough for another
    await warm.get("s1")
    await warm.flush()
    assert snapshots.saved == 1

    cold = SessionCache(store, snapshots=snapshots, snapshot_every=100)
    store.reads()
    state = await cold.get("s1")
    assert store.reads() == 1 + 4  # the snapshot's own record (checked), then what is new
    assert cold.stats.snapshots_loaded == 1
    assert state == await whole(store, "s1")


class CountingSnapshots(MemorySnapshots):
    loads = 0

    async def load(self, session: str) -> bytes | None:
        self.loads += 1
        return await super().load(session)


async def test_a_session_seen_young_is_folded_without_asking_for_a_snapshot() -> None:
    """The agent's delivery is a user message at version 2 of a new session: no snapshot
    can be that old (one is written at snapshot_every events), so a cold get folds the
    log without asking the snapshot store (a KV get per turn). Seen at or past
    snapshot_every, or not seen, the snapshot is asked for."""
    store = MemoryEventStore()
    await start(store, "young")
    await store.append("young", NewEvent(event=UserMessage(text="hi"), turn="t1"))
    await build_session(store, "old", 60)  # 241 events
    snapshots = CountingSnapshots()
    writer = SessionCache(store, snapshots=snapshots, snapshot_every=100)
    await writer.get("old")
    await writer.flush()
    assert snapshots.saved == 1
    snapshots.loads = 0
    cache = SessionCache(store, snapshots=snapshots, snapshot_every=100)
    assert await cache.get("young", seen=2) == await whole(store, "young")
    assert snapshots.loads == 0
    assert await cache.get("old", seen=99) == await whole(store, "old")
    assert snapshots.loads == 0 and cache.stats.snapshots_loaded == 0  # folded: it grew
    for seen in (100, 0):
        cold = SessionCache(store, snapshots=snapshots, snapshot_every=100)
        assert await cold.get("old", seen=seen) == await whole(store, "old")
        assert cold.stats.snapshots_loaded == 1
    assert snapshots.loads == 2


async def test_snapshots_grow_apart_as_the_session_grows() -> None:
    """A snapshot costs what the session's length costs: they are written at least a
    quarter of the last one's version apart, so their cost per event stays bounded."""
    store, snapshots = MemoryEventStore(), MemorySnapshots()
    await start(store, "s1")
    cache = SessionCache(store, snapshots=snapshots, snapshot_every=10)
    versions = []
    for index in range(300):  # 1,201 events, each turn folded as it is written
        await store.append("s1", recorded_turn(index))
        await cache.get("s1")
        await cache.flush()
        if snapshots.saved > len(versions):
            versions.append((await cache.get("s1")).version)
    gaps = [b - a for a, b in zip(versions, versions[1:], strict=False)]
    assert all(gap >= max(10, a // 4) for a, gap in zip(versions, gaps, strict=False))
    assert 10 < len(versions) < 25  # every 10 events: 120


async def test_a_tampered_snapshot_is_discarded() -> None:
    store = CountingStore()
    snapshots = MemorySnapshots()
    await build_session(store, "s1", 10)
    state = await whole(store, "s1")
    head = await store.head("s1")
    forged = state.copy()
    forged.title = "forged"
    snapshots.data["s1"] = encode_snapshot(forged, "0" * 64)  # not the log's hash
    cache = SessionCache(store, snapshots=snapshots)
    assert await cache.get("s1") == state
    assert (cache.stats.snapshots_loaded, cache.stats.snapshots_discarded) == (0, 1)
    # the right hash, but the state is not at the version the snapshot names
    snapshots.data["s1"] = _altered(encode_snapshot(state, head.hash), version=3)
    cache = SessionCache(store, snapshots=snapshots)
    assert await cache.get("s1") == state and cache.stats.snapshots_discarded == 1


async def test_a_stale_or_foreign_snapshot_is_discarded() -> None:
    store = MemoryEventStore()
    snapshots = MemorySnapshots()
    await build_session(store, "s1", 3)
    state = await whole(store, "s1")
    head = await store.head("s1")
    good = encode_snapshot(state, head.hash)
    longer = MemoryEventStore()  # the same session id with a longer history
    await build_session(longer, "s1", 5)
    cases = {
        "beyond the head": encode_snapshot(await whole(longer, "s1"), head.hash),
        "another shape": _altered(good, shape="0" * 16),
        "another session": encode_snapshot(dataclasses.replace(state, session="s2"), head.hash),
        "not a snapshot": b"\x93garbage",
    }
    for name, data in cases.items():
        snapshots.data["s1"] = data
        cache = SessionCache(store, snapshots=snapshots)
        assert await cache.get("s1") == state, name
        assert cache.stats.snapshots_loaded == 0, name
    snapshots.data["s1"] = good
    cache = SessionCache(store, snapshots=snapshots)
    assert await cache.get("s1") == state and cache.stats.snapshots_loaded == 1


async def test_a_snapshot_of_another_log_is_discarded() -> None:
    """Same session id and version, another history (a recreated stream)."""
    first, second = MemoryEventStore(), MemoryEventStore()
    snapshots = MemorySnapshots()
    for store, word in ((first, "one"), (second, "two")):
        await start(store, "s1")
        await store.append("s1", NewEvent(event=UserMessage(text=word)))
    state = await whole(first, "s1")
    snapshots.data["s1"] = encode_snapshot(state, (await first.head("s1")).hash)
    cache = SessionCache(second, snapshots=snapshots)
    assert await cache.get("s1") == await whole(second, "s1")
    assert cache.stats.snapshots_discarded == 1


async def test_failing_snapshots_only_cost_time() -> None:
    class Broken(MemorySnapshots):
        async def load(self, session: str) -> bytes | None:
            raise OSError("disk on fire")

        async def save(self, session: str, data: bytes) -> None:
            raise OSError("disk on fire")

    store = MemoryEventStore()
    await build_session(store, "s1", 5)
    cache = SessionCache(store, snapshots=Broken(), snapshot_every=2)
    assert await cache.get("s1") == await whole(store, "s1")
    await cache.flush()
    assert cache.stats.snapshots_saved == 0


def _altered(data: bytes, **changes: object) -> bytes:
    snap = msgspec.msgpack.decode(data, type=Snapshot)
    return msgspec.msgpack.encode(msgspec.structs.replace(snap, **changes))


# --------------------------------------------------------------------------- JetStream


async def test_snapshots_in_a_kv_bucket_on_nats_server(nats_url: str) -> None:
    store = await JetStreamEventStore.connect(nats_url, fresh_stream())
    try:
        snapshots = snapshot_store_for(store)
        assert isinstance(snapshots, KVSnapshots)
        assert await snapshots.load("s1") is None
        await build_session(store, "s1", 30)
        warm = SessionCache(store, snapshots=snapshots, snapshot_every=50)
        await warm.get("s1")
        await warm.flush()
        assert warm.stats.snapshots_saved == 1
        await store.append("s1", recorded_turn(30))
        # another process: its own cache, the same bucket (bound, not created again)
        again = snapshot_store_for(store)
        assert again is not None
        await again.open()
        cold = SessionCache(store, snapshots=again)
        assert await cold.get("s1") == await whole(store, "s1")
        assert cold.stats.snapshots_loaded == 1 and cold.stats.applied == 4
    finally:
        await store.close()


async def test_a_bucket_that_cannot_be_opened_is_left_alone(nats_url: str) -> None:
    """A connection that cannot reach the bucket (here: closed) costs one failed try; then
    snapshots are skipped without trying again, and the cache works without them."""
    store = await JetStreamEventStore.connect(nats_url, fresh_stream())
    try:
        await build_session(store, "s1", 3)
        nc = await nats.connect(nats_url)
        await nc.close()
        snapshots = KVSnapshots(nc, bucket_config("NOWHERE", "no such bucket"))
        await snapshots.open()  # fails, logged
        assert await snapshots.load("s1") is None
        with pytest.raises(StoreUnavailable, match="is unavailable"):  # not tried again
            await snapshots.save("s1", b"x")
        cache = SessionCache(store, snapshots=snapshots, snapshot_every=1)
        assert await cache.get("s1") == await whole(store, "s1")
        await cache.flush()
        assert cache.stats.snapshots_saved == 0
    finally:
        await store.close()
