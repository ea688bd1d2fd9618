"""The sessions list without the projections (store_history.py): a gateway's start-up
reads the sessions created since the directory's checkpoint, not every session in the
log, and lists an owner's sessions from the directory (a KV bucket on nats-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import fresh_stream
from threadline.base.errors import InvalidInput
from threadline.events.directory import MemoryDirectory
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.kv import KVDirectory, directory_for
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import SessionStarted, UserMessage
from threadline.events.store import EventStore, NewEvent
from threadline.services.gateway.store_history import StoreHistory


@pytest.fixture
async def store(nats_url: str) -> AsyncIterator[JetStreamEventStore]:
    store = await JetStreamEventStore.connect(nats_url, fresh_stream())
    yield store
    await store.close()


async def make(store: EventStore, owner: str, n: int, start: int = 0) -> list[str]:
    made = []
    for i in range(start, start + n):
        session = f"{owner}-{i:03d}"
        started = NewEvent(event=SessionStarted(owner=owner, title=f"{owner} {i}"))
        (rec,) = await store.append(session, started, expected_version=0)
        LAST_STARTED[store] = rec.position
        await store.append(session, NewEvent(event=UserMessage(text="hi"), turn=f"t{i}"))
        made.append(session)
    return made


#: the position of the newest session_started each store holds
LAST_STARTED: dict[EventStore, int] = {}


async def started(store: EventStore) -> StoreHistory:
    """A gateway's list, started and caught up with the log."""
    history = StoreHistory(store, directory=directory_for(store))
    await history.start()
    assert await history.wait(LAST_STARTED[store], timeout_s=10)
    return history


async def listed(history: StoreHistory, owner: str, limit: int = 7) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = await history.list_sessions(owner, limit=limit, cursor=cursor)
        ids += [s.id for s in page.sessions]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def test_start_up_reads_what_is_new_since_the_checkpoint(store: JetStreamEventStore) -> None:
    alice = await make(store, "alice", 30)
    bob = await make(store, "bob", 10)
    first = await started(store)
    assert isinstance(first.directory, KVDirectory)
    assert first.followed == 40  # the first gateway fills the directory
    await first.close()
    alice += await make(store, "alice", 3, start=30)

    second = await started(store)  # a restart: only the sessions made meanwhile
    try:
        assert second.followed == 3
        assert await listed(second, "alice") == alice[::-1]
        assert await listed(second, "bob", limit=50) == bob[::-1]
        assert await listed(second, "carol") == []
        alice += await make(store, "alice", 2, start=33)  # followed live
        assert await second.wait(LAST_STARTED[store], timeout_s=10)
        assert second.followed == 5 and await listed(second, "alice") == alice[::-1]
    finally:
        await second.close()


async def test_a_cursor_that_is_not_one_is_refused() -> None:
    store = MemoryEventStore()
    await make(store, "alice", 2)
    history = await started(store)
    try:
        with pytest.raises(InvalidInput):
            await history.list_sessions("alice", limit=1, cursor="yesterday")
        page = await history.list_sessions("alice", limit=1, cursor=None)
        assert [s.title for s in page.sessions] == ["alice 1"] and page.next_cursor
    finally:
        await history.close()


class CountingDirectory(MemoryDirectory):
    """A directory in memory that counts its checkpoint writes."""

    saves = 0

    async def save_checkpoint(self, position: int) -> None:
        self.saves += 1
        await super().save_checkpoint(position)


async def test_the_checkpoint_is_saved_at_most_once_a_second_and_when_stopping() -> None:
    store = MemoryEventStore()
    await make(store, "alice", 20)
    directory = CountingDirectory()
    history = StoreHistory(store, directory=directory)
    await history.start()
    assert await history.wait(LAST_STARTED[store], timeout_s=10)
    assert history.followed == 20 and directory.saves <= 2  # not one write per session
    await history.close()
    assert await directory.checkpoint() == LAST_STARTED[store]  # the last one, on stopping
