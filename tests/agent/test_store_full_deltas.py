"""Issue 12 item 10: when the store refuses a delta flushed by the coalescer's timer (a
full store), the attempt must learn of it, not lose that text and go on: the next
flush raises the error (the worker then postpones the turn and runs it again)."""

from __future__ import annotations

import asyncio

import pytest

from threadline.base.errors import StoreUnavailable
from threadline.events.schema import Event, TextDelta
from threadline.services.agent.coalesce import Coalescer, WorkerLoad


class FullStore:
    """The append callback: takes events until ``full``, then refuses them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.full = False
        self.refused = asyncio.Event()

    async def __call__(self, event: Event) -> None:
        if self.full:
            self.refused.set()
            raise StoreUnavailable("no room: insufficient resources (10023)")
        self.events.append(event)


async def test_a_delta_the_store_refused_on_the_timer_is_not_dropped() -> None:
    store = FullStore()
    coalescer = Coalescer(store, window_s=0.01, load=WorkerLoad())
    await coalescer.add(TextDelta, "one ")  # the step's first text goes out at once
    store.full = True
    await coalescer.add(TextDelta, "two ")  # within the window: left to the timer
    async with asyncio.timeout(10):
        await store.refused.wait()
    store.full = False
    await coalescer.add(TextDelta, "three")
    with pytest.raises(StoreUnavailable):
        await coalescer.flush()
    assert [e.text for e in store.events if isinstance(e, TextDelta)] == ["one "]
