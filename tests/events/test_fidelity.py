"""The in-memory store answers an append the way nats-server does.

The same script of appends at the adapters' primitive (``_publish``: stored bytes, a
``Nats-Msg-Id``, the expected last position of the session) is played on a real
nats-server and on :class:`MemoryEventStore`, and both must give the answers below.
What they show (nats-server 2.15, measured here):

* a single server checks the session's expected last position *before* the key: a
  repeated key with a stale expected position is refused (wrong last sequence), not
  answered as a duplicate;
* a clustered stream (R3) checks the key first: the same append is a duplicate;
* either way, a key is forgotten once the stream's duplicate window has passed.

The store's own logic (``EventStore._append_one``) gives the same results over both
orders; the contract suite and the state machine run on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from nats.js.api import ClusterInfo

from tests.conftest import fresh_stream
from threadline.base.config import StreamSettings
from threadline.events import codec
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import SCHEMA_VERSION, Envelope, TextDelta
from threadline.events.store import EventStore, WrongLastPosition, subject_for
from threadline.services.runtime.cluster import LocalCluster

WINDOW_S = 1.0
_SERVER_TIMER_SLACK_S = 0.3  # nats-server's purge timer fires up to ~50 ms late

_NO_LEADER = ClusterInfo()
Answer = tuple[str, int]  # ("stored" | "duplicate", position) or ("conflict", 0)
PASS_WINDOW = None
#: (key, expected last position, answer of a single server, answer of a cluster)
SCRIPT: list[tuple[str, int, Answer, Answer] | None] = [
    ("X", 0, ("stored", 1), ("stored", 1)),
    ("X", 0, ("conflict", 0), ("duplicate", 1)),  # repeated key, stale position
    ("X", 1, ("duplicate", 1), ("duplicate", 1)),  # repeated key, current position
    ("Y", 1, ("stored", 2), ("stored", 2)),
    ("X", 1, ("conflict", 0), ("duplicate", 1)),
    ("X", 2, ("duplicate", 1), ("duplicate", 1)),
    PASS_WINDOW,
    ("X", 2, ("stored", 3), ("stored", 3)),  # forgotten: stored again
    ("Y", 2, ("conflict", 0), ("conflict", 0)),
]


def record(version: int, key: str) -> bytes:
    envelope = Envelope(
        schema=SCHEMA_VERSION, session="s", version=version, at=0, actor="test", key=key,
        prev=codec.genesis_hash("s"), event=TextDelta(text=key),
    )  # fmt: skip
    return codec.encode(envelope)


async def play(
    store: EventStore, pass_window: Callable[[], Awaitable[None]], clustered: bool
) -> list[Answer]:
    answers: list[Answer] = []
    expected: list[Answer] = []
    for step in SCRIPT:
        if step is None:
            await pass_window()
            continue
        key, position, single, cluster = step
        expected.append(cluster if clustered else single)
        subject = subject_for(store.prefix, "s", "text_delta")
        try:
            result = await store._publish(subject, record(3, key), f"s:{key}", position, "s")
        except WrongLastPosition:
            answers.append(("conflict", 0))
            continue
        answers.append(("duplicate" if result.duplicate else "stored", result.position))
    assert answers == expected
    return answers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("clustered", [False, True], ids=["single", "clustered"])
async def test_the_memory_store_plays_the_script(clustered: bool) -> None:
    clock = Clock()
    store = MemoryEventStore(duplicate_window_s=WINDOW_S, clock=clock, clustered=clustered)

    async def pass_window() -> None:
        clock.now += WINDOW_S

    await play(store, pass_window, clustered)


async def on_server(url: str, settings: StreamSettings, clustered: bool) -> None:
    store = await JetStreamEventStore.connect(url, settings, allow_unsafe=True)  # 1 s window
    if clustered:  # a new R3 stream answers appends once its group has elected a leader
        js = store.nc.jetstream()
        async with asyncio.timeout(30):
            while not ((await js.stream_info(settings.name)).cluster or _NO_LEADER).leader:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # nats reports no election event to wait on

    async def pass_window() -> None:
        """The server forgets keys on its own timer, which nothing observable reports."""
        await asyncio.sleep(WINDOW_S + _SERVER_TIMER_SLACK_S)

    try:
        await play(store, pass_window, clustered)
    finally:
        await store.close()


async def test_a_single_nats_server_plays_the_script(nats_url: str) -> None:
    await on_server(nats_url, fresh_stream(duplicate_window_s=WINDOW_S), clustered=False)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    async with LocalCluster(tmp_path, agents=0, gateways=0, projector=False) as nodes:
        yield nodes


async def test_a_nats_cluster_plays_the_script(cluster: LocalCluster) -> None:
    settings = fresh_stream(duplicate_window_s=WINDOW_S, replicas=3)
    await on_server(cluster.service_url(), settings, clustered=True)
