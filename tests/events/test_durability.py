"""Durability: kill -9 nats-server (sync_interval: always) while appending; nothing acked lost."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import fresh_stream
from threadline.base.errors import StoreUnavailable
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TextDelta
from threadline.events.store import NewEvent
from threadline.services.runtime.natsserver import EmbeddedNats

FSYNC_ALWAYS = "jetstream { sync_interval: always }\n"


@pytest.fixture
async def fsync_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats", config_text=FSYNC_ALWAYS)
    await server.start()
    yield server
    await server.stop()


async def test_kill_nine_twenty_times_loses_no_acknowledged_append(
    fsync_server: EmbeddedNats,
) -> None:
    settings = fresh_stream()
    store = await JetStreamEventStore.connect(fsync_server.url, settings, timeout_s=2)
    acked: dict[str, int] = {}  # idempotency key -> position, for every acknowledged append
    rng = random.Random(7)
    for kill in range(20):
        for _ in range(rng.randint(5, 40)):
            event = NewEvent(event=TextDelta(text=f"k{kill}"))
            try:
                [rec] = await store.append(f"s{kill % 3}", event)
            except StoreUnavailable:
                continue  # not acknowledged: allowed to be lost
            acked[event.key] = rec.position
        await fsync_server.restart(kill=True)
        await store.nc.flush(timeout=10)  # reconnected to the restarted server
        info = await store.nc.jetstream().stream_info(settings.name)
        assert info.state.last_seq >= max(acked.values())  # the stream survived with all of it
    stored = {}
    for session in ("s0", "s1", "s2"):
        stored |= {r.envelope.key: r.position for r in await store.load(session)}
    lost = {key for key in acked if key not in stored}
    assert not lost, f"{len(lost)} acknowledged appends lost"
    assert all(stored[key] == position for key, position in acked.items())
    await store.close()
