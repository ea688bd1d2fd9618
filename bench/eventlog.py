"""Event log benchmark: the store against raw nats-py, measured in the same run.

* append throughput, one session sequential: ``store.append`` awaited one by one vs
  raw ``js.publish`` awaited one by one;
* append throughput across many sessions concurrently: ``store.append`` from one task
  per session vs raw pipelined ``js.publish_async`` of the same number of messages;
* publish-to-follower latency: ``store.append`` -> ``store.follow`` vs raw
  ``js.publish`` -> a raw nats-py ordered push consumer, one event in flight at a time.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
from nats.js.api import DeliverPolicy

from bench.common import Timer, median, percentile, progress
from threadline.base.config import StreamSettings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TextDelta
from threadline.events.store import NewEvent

PAYLOAD = TextDelta(text="a few coalesced tokens of text ")


def _settings() -> StreamSettings:
    tag = uuid.uuid4().hex[:8]
    return StreamSettings(name=f"B{tag}", prefix=f"b{tag}")


async def raw_sequential(url: str, n: int) -> float:
    settings = _settings()
    store = await JetStreamEventStore.connect(url, settings)  # creates the same stream
    await store.close()
    nc = await nats.connect(url)
    js = nc.jetstream()
    body = b'{"schema":1,"session":"s","version":1,"event":{"kind":"text_delta","text":"x"}}'
    with Timer() as t:
        for _ in range(n):
            await js.publish(f"{settings.prefix}.s.text_delta", body)
    await nc.close()
    return n / t.seconds


async def store_sequential(url: str, n: int) -> float:
    store = await JetStreamEventStore.connect(url, _settings())
    with Timer() as t:
        for _ in range(n):
            await store.append("s", NewEvent(event=PAYLOAD))
    await store.close()
    return n / t.seconds


async def raw_pipelined(url: str, n: int, sessions: int) -> float:
    settings = _settings()
    store = await JetStreamEventStore.connect(url, settings)
    await store.close()
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    body = b'{"schema":1,"session":"s","version":1,"event":{"kind":"text_delta","text":"x"}}'
    with Timer() as t:
        futures = [
            await js.publish_async(f"{settings.prefix}.s{i % sessions}.text_delta", body)
            for i in range(n)
        ]
        await asyncio.gather(*futures)
    await nc.close()
    return n / t.seconds


async def store_many_sessions(url: str, n: int, sessions: int) -> float:
    store = await JetStreamEventStore.connect(url, _settings())
    per_session = n // sessions

    async def one(session: str) -> None:
        for _ in range(per_session):
            await store.append(session, NewEvent(event=PAYLOAD))

    with Timer() as t:
        await asyncio.gather(*(one(f"s{i}") for i in range(sessions)))
    await store.close()
    return per_session * sessions / t.seconds


async def raw_follow_latency(url: str, n: int) -> list[float]:
    settings = _settings()
    store = await JetStreamEventStore.connect(url, settings)
    await store.close()
    nc = await nats.connect(url)
    js = nc.jetstream()
    subject = f"{settings.prefix}.s.text_delta"
    got: asyncio.Queue[float] = asyncio.Queue()

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        got.put_nowait(time.perf_counter())

    sub = await js.subscribe(
        subject, cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        await js.publish(subject, b'{"event":{"kind":"text_delta","text":"x"}}')
        latencies.append((await got.get() - start) * 1000)
    await sub.unsubscribe()
    await nc.close()
    return latencies


async def store_follow_latency(url: str, n: int) -> list[float]:
    settings = _settings()
    writer = await JetStreamEventStore.connect(url, settings)
    reader = await JetStreamEventStore.connect(url, settings)
    got: asyncio.Queue[float] = asyncio.Queue()

    async def follow() -> None:
        async for _ in reader.follow("s"):
            got.put_nowait(time.perf_counter())

    task = asyncio.create_task(follow())
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        await writer.append("s", NewEvent(event=PAYLOAD))
        latencies.append((await got.get() - start) * 1000)
    task.cancel()
    await writer.close()
    await reader.close()
    return latencies


async def run(url: str, *, quick: bool = False) -> list[str]:
    n = 3_000 if quick else 20_000
    sessions = 1_000
    progress(f"sequential appends, one session ({n // 4} each)")
    raw_seq = await raw_sequential(url, n // 4)
    store_seq = await store_sequential(url, n // 4)
    progress(f"concurrent appends across {sessions} sessions ({n} each)")
    raw_pipe = await raw_pipelined(url, n, sessions)
    store_many = await store_many_sessions(url, n, sessions)
    progress("publish-to-follower latency (2,000 events each)")
    raw_lat = await raw_follow_latency(url, 500 if quick else 2_000)
    store_lat = await store_follow_latency(url, 500 if quick else 2_000)
    added_p50 = median(store_lat) - median(raw_lat)
    added_p99 = percentile(store_lat, 99) - percentile(raw_lat, 99)
    return [
        "| measure | raw nats-py | Threadline store | ratio / delta |",
        "| --- | --- | --- | --- |",
        f"| appends/s, one session, awaited one by one | {raw_seq:,.0f} | {store_seq:,.0f} "
        f"| {store_seq / raw_seq:.2f} |",
        f"| appends/s, {sessions} sessions concurrently (raw: pipelined `publish_async`) "
        f"| {raw_pipe:,.0f} | {store_many:,.0f} | {store_many / raw_pipe:.2f} (target >= 0.50) |",
        f"| publish-to-follower latency p50 (ms) | {median(raw_lat):.3f} | "
        f"{median(store_lat):.3f} | +{added_p50:.3f} ms (target < 0.2) |",
        f"| publish-to-follower latency p99 (ms) | {percentile(raw_lat, 99):.3f} | "
        f"{percentile(store_lat, 99):.3f} | {added_p99:+.3f} ms |",
    ]
