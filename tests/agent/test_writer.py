"""Fencing: a stalled attempt that comes back cannot append into a turn taken over."""

from __future__ import annotations

import pytest

from threadline.events.memory import MemoryEventStore
from threadline.events.schema import (
    CancelRequested,
    SessionStarted,
    TextDelta,
    TurnStarted,
    UserMessage,
)
from threadline.events.store import NewEvent
from threadline.services.agent.writer import Fenced, TurnWriter


async def setup() -> tuple[MemoryEventStore, int]:
    store = MemoryEventStore()
    await store.append("s", NewEvent(event=SessionStarted(owner="o")))
    await store.append("s", NewEvent(event=UserMessage(text="hi"), turn="t1"))
    return store, 2


async def test_stalled_attempt_is_fenced_off_after_a_takeover() -> None:
    store, version = await setup()
    old = TurnWriter(store, "s", "t1", 1, version, actor="agent:a")
    await old.append(TurnStarted(turn_id="t1", attempt=1, provider="dev", model="m"))
    await old.append(TextDelta(text="before the stall"))
    # another worker takes the turn over while "old" is stopped
    new = TurnWriter(store, "s", "t1", 2, (await store.head("s")).version, actor="agent:b")
    await new.append(TurnStarted(turn_id="t1", attempt=2, provider="dev", model="m"))
    with pytest.raises(Fenced):
        await old.append(TextDelta(text="after the stall"))
    texts = [r.event.text for r in await store.load("s") if isinstance(r.event, TextDelta)]
    assert texts == ["before the stall"]
    await new.append(TextDelta(text="the new attempt carries on"))


async def test_gateway_appends_are_stepped_over_and_stops_noticed() -> None:
    store, version = await setup()
    writer = TurnWriter(store, "s", "t1", 1, version, actor="agent:a")
    await writer.append(TurnStarted(turn_id="t1", attempt=1, provider="dev", model="m"))
    await store.append("s", NewEvent(event=UserMessage(text="next"), turn="t2"))
    await store.append("s", NewEvent(event=CancelRequested(), turn="t1"))
    await writer.append(TextDelta(text="still mine"))
    assert writer.cancelled.is_set()
    assert [r.kind for r in await store.load("s")][-1] == "text_delta"
