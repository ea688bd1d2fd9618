"""JetStream-specific guarantees: real concurrency, Msg-Id dedup, reconnects, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from tests.conftest import fresh_stream
from tests.support.proxy import CuttableProxy
from threadline.base.errors import ConcurrencyError, StreamConfigError
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted, TextDelta
from threadline.events.store import NewEvent, Recorded
from threadline.services.runtime.natsserver import EmbeddedNats


async def test_fifty_concurrent_writers_one_winner_per_version(nats_url: str) -> None:
    settings = fresh_stream()
    stores = [await JetStreamEventStore.connect(nats_url, settings) for _ in range(5)]
    await stores[0].append("hot", NewEvent(event=SessionStarted(owner="o")), expected_version=0)
    target = 60
    winners: dict[int, int] = {}
    losses = 0

    async def writer(ident: int) -> None:
        nonlocal losses
        store = stores[ident % len(stores)]
        while True:
            head = await store.head("hot")
            if head.version >= target:
                return
            event = NewEvent(event=TextDelta(text=f"w{ident}"))
            try:
                [rec] = await store.append("hot", event, expected_version=head.version)
            except ConcurrencyError:
                losses += 1
                continue
            assert rec.version not in winners, f"two winners for version {rec.version}"
            winners[rec.version] = ident

    await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(50))), 60)
    records = await stores[0].load("hot")
    versions = [r.version for r in records]
    assert versions == list(range(1, len(versions) + 1))
    assert sorted(winners) == versions[1:]
    assert losses > 0  # the writers really did race
    for rec in records[1:]:
        assert rec.event == TextDelta(text=f"w{winners[rec.version]}")
    for store in stores:
        await store.close()


async def test_raw_publish_with_same_msg_id_is_stored_once(js_store: JetStreamEventStore) -> None:
    js = js_store.nc.jetstream()
    subject = f"{js_store.prefix}.dup.text_delta"
    acks = [
        await js.publish(subject, b"{}", headers={"Nats-Msg-Id": "dup:fixed"}) for _ in range(3)
    ]
    assert [a.seq for a in acks] == [acks[0].seq] * 3
    assert [a.duplicate for a in acks] == [None, True, True]
    info = await js.stream_info(js_store.settings.name)
    assert info.state.messages == 1


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
