"""Bounded reads: what reading the edge of a session costs, short session vs long one.

Two sessions on one stream, a short one (10 events) and a long one (10,000 events), each
event of the long one followed by an event of another session (so its positions are not
contiguous, as on a busy stream). Through ``JetStreamEventStore``, median of repeated
calls, each measured for both sessions:

* the tail: ``read(session, from_version=head - 9)`` (the last 10 events);
* the first event: ``read(session, to_version=1)``;
* after a position: ``read(session, after=position of head - 10)`` (what a reader with a
  cached state asks for);
* a conflict: ``append(..., expected_version=head - 10)`` with a fresh key, which reads the
  events written since that version to tell a retry from a conflict;
* the whole session: ``load`` (events per second), against the raw nats-py ordered
  consumer reading the same events.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import nats
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from bench.common import progress
from threadline.base.config import StreamSettings
from threadline.base.errors import ConcurrencyError
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted, TextDelta
from threadline.events.store import EventStore, NewEvent

SHORT, LONG = 10, 10_000


def _delta(i: int) -> NewEvent:
    return NewEvent(event=TextDelta(text=f"a few coalesced tokens of text {i}"))


async def _fill(store: EventStore, long_events: int) -> None:
    await store.append("short", [NewEvent(event=SessionStarted(owner="bench"))])
    await store.append("short", [_delta(i) for i in range(SHORT - 1)])
    await store.append("long", NewEvent(event=SessionStarted(owner="bench")))
    for start in range(1, long_events, 500):
        batch = range(start, min(start + 500, long_events))

        async def noise(i: int) -> None:
            await store.append(f"noise{i % 50}", _delta(i))

        async def long(batch: range) -> None:
            for i in batch:
                await store.append("long", _delta(i))

        await asyncio.gather(long(batch), *(noise(i) for i in batch))


Call = Callable[[], Awaitable[object]]


async def _ms_each(calls: list[Call], repeat: int) -> list[float]:
    """The median time of each call in ms, the calls taking turns (so that both see
    the machine at the same speed: this one's speed moves from minute to minute)."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for call, out in zip(calls, times, strict=True):
            start = time.perf_counter()
            await call()
            out.append((time.perf_counter() - start) * 1000)
    return [statistics.median(t) for t in times]


async def _calls(store: EventStore, session: str) -> dict[str, Call]:
    head = await store.head(session)
    tail_from = max(1, head.version - 9)

    async def tail() -> None:
        got = [r async for r in store.read(session, from_version=tail_from)]
        assert len(got) == head.version - tail_from + 1

    async def first() -> None:
        got = [r async for r in store.read(session, to_version=1)]
        assert [r.version for r in got] == [1]

    async def conflict() -> None:
        try:
            await store.append(session, _delta(-1), expected_version=max(0, head.version - 10))
        except ConcurrencyError:
            return
        raise AssertionError("no conflict")

    before = [r async for r in store.read(session, from_version=max(1, head.version - 10))]

    async def after() -> None:
        got = [r async for r in store.read(session, after=before[0].position)]
        assert len(got) == len(before) - 1

    return {"tail": tail, "first": first, "after": after, "conflict": conflict}


async def _load_rate(store: EventStore, session: str) -> float:
    start = time.perf_counter()
    records = await store.load(session)
    return len(records) / (time.perf_counter() - start)


async def _raw_rate(url: str, settings: StreamSettings, session: str, count: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    done = asyncio.Event()
    got = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal got
        got += 1
        if got == count:
            done.set()

    start = time.perf_counter()
    sub = await js.subscribe(
        f"{settings.prefix}.{session}.*",
        cb=on_msg,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    await done.wait()
    rate = count / (time.perf_counter() - start)
    await sub.unsubscribe()
    await nc.close()
    return rate


async def run(url: str, *, quick: bool = False) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    settings = StreamSettings(name=f"R{tag}", prefix=f"r{tag}")
    store = await JetStreamEventStore.connect(url, settings)
    long_events = 2_000 if quick else LONG
    progress(f"bounded reads: writing a {SHORT}-event and a {long_events:,}-event session")
    await _fill(store, long_events)
    repeat = 20 if quick else 100
    progress(f"bounded reads: {repeat} calls of each, taking turns")
    calls = {"short": await _calls(store, "short"), "long": await _calls(store, "long")}
    short: dict[str, float] = {}
    long: dict[str, float] = {}
    for key in calls["short"]:
        short[key], long[key] = await _ms_each([calls["short"][key], calls["long"][key]], repeat)
    loads, raws = [], []
    for _ in range(5):  # taking turns too
        loads.append(await _load_rate(store, "long"))
        raws.append(await _raw_rate(url, settings, "long", long_events))
    load, raw = statistics.median(loads), statistics.median(raws)
    await store.close()
    names = {
        "tail": "`read(from_version=head-9)`, the last 10 events (ms)",
        "first": "`read(to_version=1)`, the first event (ms)",
        "after": "`read(after=position)`, the last 10 events (ms)",
        "conflict": "`append` with a stale `expected_version` (head-10): conflict (ms)",
    }
    lines = [
        f"| median of {repeat} calls | {SHORT}-event session | {long_events:,}-event session "
        "| ratio |",
        "| --- | --- | --- | --- |",
    ]
    for key, name in names.items():
        lines.append(
            f"| {name} | {short[key]:.2f} | {long[key]:.2f} | {long[key] / short[key]:.2f} |"
        )
    lines.append(
        f"| `load`, the whole {long_events:,}-event session (events/s; raw nats-py ordered "
        f"consumer: {raw:,.0f}) | | {load:,.0f} | {load / raw:.2f} of raw |"
    )
    return lines
