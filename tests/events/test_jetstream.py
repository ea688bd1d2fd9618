"""JetStream-specific guarantees: bounded reads, reconnects, restarts, unsafe streams.

(The contract, concurrency and idempotency included, is ``tests/events/contract.py``;
how nats-server checks an append, ``tests/events/test_fidelity.py``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import pytest

from tests.conftest import fresh_stream
from tests.support.proxy import CuttableProxy
from threadline.base.errors import ConcurrencyError, StreamConfigError
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted, TextDelta
from threadline.events.store import NewEvent, Recorded, Stored
from threadline.services.runtime.natsserver import EmbeddedNats


async def received(store: JetStreamEventStore, call: Callable[[], Awaitable[object]]) -> int:
    """How many messages the store's connection received during ``call``."""
    before = store.nc.stats["in_msgs"]
    await call()
    return store.nc.stats["in_msgs"] - before


async def long_session(store: JetStreamEventStore, events: int) -> list[Recorded]:
    """A session of ``events`` events, each followed by another session's."""
    written: list[Recorded] = []
    for start in range(0, events, 250):
        batch = range(start, min(start + 250, events))
        written += await store.append(
            "long", [NewEvent(event=TextDelta(text=str(i))) for i in batch]
        )
        await asyncio.gather(
            *(store.append(f"o{i % 7}", NewEvent(event=TextDelta(text="x"))) for i in batch)
        )
    return written


async def test_reads_at_the_edge_of_a_long_session_fetch_only_the_edge(
    js_store: JetStreamEventStore,
) -> None:
    """A read from a version, to a version or after a position reads that part of the
    session from the stream, not the session from its start."""
    written = await long_session(js_store, 2_000)

    async def tail() -> None:
        got = [r.version async for r in js_store.read("long", from_version=1_991)]
        assert got == list(range(1_991, 2_001))

    async def first() -> None:
        assert [r.version async for r in js_store.read("long", to_version=1)] == [1]

    async def after() -> None:
        got = [r.version async for r in js_store.read("long", after=written[-4].position)]
        assert got == [1_998, 1_999, 2_000]

    async def middle() -> None:
        got = [r.version async for r in js_store.read("long", from_version=700, to_version=709)]
        assert got == list(range(700, 710))

    # each: the head, a few probes for where the version is, and one batch (with its end)
    assert await received(js_store, tail) <= 40
    assert await received(js_store, first) <= 5
    assert await received(js_store, after) <= 10
    assert await received(js_store, middle) <= 50


async def test_a_conflict_reads_only_what_was_written_since(
    js_store: JetStreamEventStore, nats_url: str
) -> None:
    await long_session(js_store, 2_000)
    other = await JetStreamEventStore.connect(nats_url, js_store.settings)
    await other.append("long", NewEvent(event=TextDelta(text="theirs")))
    key = NewEvent(event=TextDelta(text="mine"))

    async def conflict() -> None:
        with pytest.raises(ConcurrencyError):  # js_store last saw version 2,000
            await js_store.append("long", key, expected_version=2_000)

    assert await received(js_store, conflict) <= 10
    await other.close()


async def sent(store: JetStreamEventStore, call: Callable[[], Awaitable[object]]) -> int:
    """How many messages the store's connection published during ``call``."""
    before = store.nc.stats["out_msgs"]
    await call()
    return store.nc.stats["out_msgs"] - before


async def test_an_append_after_a_read_publishes_at_once(
    js_store: JetStreamEventStore, nats_url: str
) -> None:
    """A read asks the leader for the session's head and the store keeps it: an append
    right after it (a command after reading the state, a turn after folding its
    session) is one publish, though another process moved the session on since this
    store last appended to it. Neither a head read again nor a publish refused as
    stale, at an expected version or at any version."""
    other = await JetStreamEventStore.connect(nats_url, js_store.settings)
    [mine] = await js_store.append("s", NewEvent(event=TextDelta(text="mine")))
    await other.append("s", [NewEvent(event=TextDelta(text=str(i))) for i in range(3)])
    [*_, last] = [r async for r in js_store.read("s", after=mine.position)]

    async def at_version() -> None:
        await js_store.append("s", NewEvent(event=TextDelta(text="a")), expected_version=4)

    assert last.version == 4
    assert await sent(js_store, at_version) == 1
    [theirs] = await other.append("s", NewEvent(event=TextDelta(text="theirs")))
    assert [r.version async for r in js_store.read("s", from_version=6)] == [6]

    async def any_version() -> None:
        [rec] = await js_store.append("s", NewEvent(event=TextDelta(text="b")))
        assert (rec.version, rec.envelope.prev) == (7, theirs.hash)

    assert await sent(js_store, any_version) == 1
    await other.close()


async def test_a_read_waits_for_what_the_answering_replica_lacks(
    js_store: JetStreamEventStore,
) -> None:
    """When a batched get comes back short of the leader's end (a replica that lags),
    the rest comes from a consumer, which waits for it: here the end is an event that
    is not stored yet, the way a lagging replica has not stored it yet."""
    written = await js_store.append("s", [NewEvent(event=TextDelta(text=str(i))) for i in range(3)])
    end = written[-1].position + 1
    subjects = f"{js_store.prefix}.s.*"
    advisory = f"$JS.EVENT.ADVISORY.CONSUMER.%s.{js_store.settings.name}.*"
    created = await js_store.nc.subscribe(advisory % "CREATED")
    deleted = await js_store.nc.subscribe(advisory % "DELETED")
    reading = asyncio.create_task(collect_raw(js_store._records_after(subjects, 0, end, 10)))
    await created.next_msg(timeout=10)  # the batch came back short: a consumer reads on
    [late] = await js_store.append("s", NewEvent(event=TextDelta(text="late")))
    got = await asyncio.wait_for(reading, 10)
    assert [s.position for s in got] == [r.position for r in written] + [late.position]
    await deleted.next_msg(timeout=10)  # and is gone once the read is done


async def collect_raw(it: AsyncIterator[Stored]) -> list[Stored]:
    return [item async for item in it]


async def test_unsafe_stream_is_refused(nats_url: str) -> None:
    settings = fresh_stream(deny_delete=False)
    with pytest.raises(StreamConfigError, match="deny_delete"):
        await JetStreamEventStore.connect(nats_url, settings)
    store = await JetStreamEventStore.connect(nats_url, settings, allow_unsafe=True)
    await store.close()


async def collect(it: AsyncIterator[Recorded], n: int, out: list[Recorded]) -> None:
    async for rec in it:
        out.append(rec)
        if len(out) == n:
            return


async def test_follow_survives_a_cut_connection(nats_server: EmbeddedNats) -> None:
    host, port = nats_server.url.removeprefix("nats://").split(":")
    proxy = CuttableProxy(host, int(port))
    url = await proxy.start()
    settings = fresh_stream()
    reader = await JetStreamEventStore.connect(url, settings, heartbeat_s=0.3)
    writer = await JetStreamEventStore.connect(nats_server.url, settings)
    await writer.append("s", [NewEvent(event=SessionStarted(owner="o"))])
    got: list[Recorded] = []
    follower = asyncio.create_task(collect(reader.follow("s"), 41, got))
    cuts = 0
    for i in range(40):
        await writer.append("s", NewEvent(event=TextDelta(text=str(i))))
        if i in (10, 25):
            proxy.cut()
            cuts += 1
            await asyncio.wait_for(proxy.wait_for_connections(1 + cuts), 10)
    await asyncio.wait_for(follower, 30)
    assert [r.version for r in got] == list(range(1, 42))
    assert proxy.connections >= 3  # it really reconnected
    await reader.close()
    await writer.close()
    await proxy.close()


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start()
    yield server
    await server.stop()


async def test_follow_survives_a_server_restart(own_server: EmbeddedNats) -> None:
    settings = fresh_stream()
    reader = await JetStreamEventStore.connect(own_server.url, settings, heartbeat_s=0.3)
    writer = await JetStreamEventStore.connect(own_server.url, settings)
    await writer.append("s", [NewEvent(event=SessionStarted(owner="o"))])
    got: list[Recorded] = []
    follower = asyncio.create_task(collect(reader.follow("s"), 21, got))
    for i in range(10):
        await writer.append("s", NewEvent(event=TextDelta(text=str(i))))
    await own_server.restart(kill=True)
    await writer.nc.flush(timeout=10)  # the writer is back
    for i in range(10, 20):
        await writer.append("s", NewEvent(event=TextDelta(text=str(i))))
    await asyncio.wait_for(follower, 30)
    assert [r.version for r in got] == list(range(1, 22))
    assert [r.event.text for r in got[1:]] == [str(i) for i in range(20)]  # type: ignore[union-attr]
    await reader.close()
    await writer.close()


async def test_data_survives_a_restart(own_server: EmbeddedNats) -> None:
    settings = fresh_stream()
    store = await JetStreamEventStore.connect(own_server.url, settings)
    await store.append("keep", [NewEvent(event=SessionStarted(owner="o"))])
    await store.close()
    await own_server.restart()
    nc = await nats.connect(own_server.url)
    assert (await nc.jetstream().stream_info(settings.name)).state.messages == 1
    await nc.close()
