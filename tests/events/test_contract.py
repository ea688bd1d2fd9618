"""The event store contract (``tests/events/contract.py``) on both adapters."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import fresh_stream
from tests.events.contract import EventStoreContract
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.events.store import EventStore

#: nats-server forgets keys on a timer that fires at most ~50 ms after a key's window
#: ends; a little more, so a loaded machine does not make the window tests flaky
_SERVER_TIMER_SLACK_S = 0.3


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestMemoryStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _clock(self) -> None:
        self.clock = FakeClock()

    async def make_store(self, *, duplicate_window_s: float | None = None) -> EventStore:
        if duplicate_window_s is None:
            return MemoryEventStore(clock=self.clock)
        return MemoryEventStore(clock=self.clock, duplicate_window_s=duplicate_window_s)

    async def another_client(self, store: EventStore) -> EventStore:
        assert isinstance(store, MemoryEventStore)
        return store.another_client()

    async def pass_window(self, store: EventStore) -> None:
        assert isinstance(store, MemoryEventStore)
        self.clock.now += store._log.window_s


class TestJetStreamStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, nats_url: str) -> None:
        self.url = nats_url

    async def make_store(self, *, duplicate_window_s: float | None = None) -> EventStore:
        if duplicate_window_s is None:
            return await JetStreamEventStore.connect(self.url, fresh_stream(), heartbeat_s=0.5)
        settings = fresh_stream(duplicate_window_s=duplicate_window_s)
        # a window this short is below what a production stream may have: allowed in tests
        return await JetStreamEventStore.connect(
            self.url, settings, heartbeat_s=0.5, allow_unsafe=True
        )

    async def another_client(self, store: EventStore) -> EventStore:
        assert isinstance(store, JetStreamEventStore)
        return await JetStreamEventStore.connect(self.url, store.settings, heartbeat_s=0.5)

    async def pass_window(self, store: EventStore) -> None:
        """The server forgets keys on its own timer, which nothing observable reports:
        wait for it (the window, 1 s in these tests, and the timer's slack)."""
        assert isinstance(store, JetStreamEventStore)
        await asyncio.sleep(store.settings.duplicate_window_s + _SERVER_TIMER_SLACK_S)
