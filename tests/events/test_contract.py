"""The event store contract (``tests/events/contract.py``) on both adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import fresh_stream
from tests.events.contract import EventStoreContract
from tests.support.window import window_passed
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.events.signing import Signer, TrustPolicy
from threadline.events.store import EventStore


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

    async def signed_client(
        self, store: EventStore, signer: Signer | None, trust: TrustPolicy | None
    ) -> EventStore:
        assert isinstance(store, MemoryEventStore)
        return store.another_client(signer=signer, trust=trust)


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
        """Watch the server forget a probe's key (tests.support.window)."""
        assert isinstance(store, JetStreamEventStore)
        await window_passed(store)

    @pytest.fixture(autouse=True)
    async def _signed_clients(self) -> AsyncIterator[None]:
        self.opened: list[EventStore] = []
        yield
        for store in self.opened:
            await store.close()

    async def signed_client(
        self, store: EventStore, signer: Signer | None, trust: TrustPolicy | None
    ) -> EventStore:
        assert isinstance(store, JetStreamEventStore)
        other = await JetStreamEventStore.connect(
            self.url, store.settings, heartbeat_s=0.5, signer=signer, trust=trust
        )
        self.opened.append(other)
        return other
