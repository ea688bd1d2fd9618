"""Projection benchmark: the projector and rebuild against a raw ordered-consumer read.

* raw baseline: a nats-py ordered push consumer reading every event of the stream
  (no decoding, nothing written) — the fastest the log can be read from Python;
* projection throughput: the projector catching up on the whole log into a fresh
  SQLite file / PostgreSQL schema (decode, three views, tracking, one transaction per
  batch), in events per second;
* read only: the projector's input (``follow_raw``) without projecting, to show
  how much of the projector's time is reading the log;
* rebuild: ``threadline projections rebuild`` of all views (project into a scratch
  database, then swap it in), wall time.

PostgreSQL is ``THREADLINE_DATABASE_URL`` (default the local server, database ``test``);
its rows say "not measured" when no server answers there.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import uuid
from pathlib import Path

import nats
from nats.js.api import DeliverPolicy

from bench.common import Timer, progress
from threadline.base.config import StreamSettings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import (
    AssistantMessage,
    SessionStarted,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnCompleted,
    TurnStarted,
    Usage,
    UserMessage,
)
from threadline.events.store import NewEvent
from threadline.projections import Projector, ProjectorConfig, rebuild

PG_URL = os.environ.get("THREADLINE_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
SESSIONS = 500


def _turn(rng: random.Random, n: int) -> list[NewEvent]:
    """A turn as the agent writes it: deltas, sometimes a tool call, message, completion."""
    turn, usage = f"t{n}", Usage(input_tokens=120, output_tokens=40)

    def ev(event: object) -> NewEvent:
        return NewEvent(event=event, turn=turn, attempt=1, actor="agent:bench")  # type: ignore[arg-type]

    events = [
        NewEvent(event=UserMessage(text=f"question {n}"), turn=turn, actor="user:bench"),
        ev(TurnStarted(turn_id=turn, attempt=1, provider="openai", model="gpt-x")),
    ]
    if rng.random() < 0.3:
        events += [
            ev(ToolCall(call_id=f"c{n}", tool="search", arguments={"q": n})),
            ev(AssistantMessage(text="", finish_reason="tool_calls", usage=usage)),
            ev(ToolResult(call_id=f"c{n}", tool="search", content="result " * 20, duration_ms=5)),
        ]
    events += [ev(TextDelta(text="a few coalesced tokens ")) for _ in range(rng.randint(4, 16))]
    events += [
        ev(AssistantMessage(text="an answer " * 20, usage=usage)),
        ev(TurnCompleted(usage=usage, ttft_ms=420.0, duration_ms=1800.0)),
    ]
    return events


async def fill(url: str, n: int) -> StreamSettings:
    """A fresh stream holding about ``n`` events across SESSIONS sessions."""
    tag = uuid.uuid4().hex[:8]
    settings = StreamSettings(name=f"P{tag}", prefix=f"p{tag}")
    store = await JetStreamEventStore.connect(url, settings)
    rng = random.Random(1)
    per_session: list[list[NewEvent]] = [
        [NewEvent(event=SessionStarted(owner=f"o{i % 50}", provider="openai", model="gpt-x"))]
        for i in range(SESSIONS)
    ]
    count, turn = SESSIONS, 0
    while count < n:
        turn += 1
        events = _turn(rng, turn)
        per_session[turn % SESSIONS] += events
        count += len(events)

    async def one(i: int) -> None:
        await store.append(f"s{i}", per_session[i])

    await asyncio.gather(*(one(i) for i in range(SESSIONS)))
    await store.close()
    return settings


async def raw_read(url: str, settings: StreamSettings, n: int) -> float:
    """Seconds for a raw nats-py ordered consumer to receive all ``n`` events."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    done = asyncio.Event()
    seen = 0

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            done.set()

    with Timer() as t:
        sub = await js.subscribe(
            f"{settings.prefix}.>", cb=on_msg, ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL, pending_msgs_limit=-1, pending_bytes_limit=-1,
        )  # fmt: skip
        await done.wait()
    await sub.unsubscribe()
    await nc.close()
    return t.seconds


def _config(backend: str, tmp: Path) -> ProjectorConfig:
    tag = uuid.uuid4().hex[:8]
    if backend == "postgres":
        return ProjectorConfig(sqlite_path="", database_url=PG_URL, schema=f"bench_{tag}")
    return ProjectorConfig(sqlite_path=str(tmp / f"views-{tag}.sqlite3"))


async def project(url: str, settings: StreamSettings, config: ProjectorConfig) -> float:
    """Seconds for a projector to catch up on the whole log into an empty database."""
    store = await JetStreamEventStore.connect(url, settings)
    recorder = await asyncio.to_thread(config.open)
    projector = Projector(store, recorder, until_end=True, batch_size=config.batch_size)
    with Timer() as t:
        await projector.run()
    await asyncio.to_thread(recorder.drop)
    await store.close()
    return t.seconds


async def store_read(url: str, settings: StreamSettings) -> float:
    """Seconds for the projector's reader (``follow_raw``) alone to read the whole log."""
    store = await JetStreamEventStore.connect(url, settings)
    with Timer() as t:
        async for _ in store.follow_raw([f"{settings.prefix}.>"], until_end=True):
            pass
    await store.close()
    return t.seconds


async def rebuild_time(url: str, settings: StreamSettings, config: ProjectorConfig) -> float:
    store = await JetStreamEventStore.connect(url, settings)
    live = await asyncio.to_thread(config.open)  # the live views the rebuild replaces
    await asyncio.to_thread(live.close)
    with Timer() as t:
        await rebuild(store, config)
    live = await asyncio.to_thread(config.open)
    await asyncio.to_thread(live.drop)
    await store.close()
    return t.seconds


def _pg_answers() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3):
            return True
    except Exception:
        return False


async def run(url: str, *, quick: bool) -> list[str]:
    n = 10_000 if quick else 100_000
    progress(f"writing {n:,} events across {SESSIONS} sessions")
    settings = await fill(url, n)
    store = await JetStreamEventStore.connect(url, settings)
    total = await store.last_position()
    await store.close()
    backends = ["sqlite"] + (["postgres"] if await asyncio.to_thread(_pg_answers) else [])
    rows = [
        "| measure | raw ordered consumer (read only) | Threadline | ratio |",
        "| --- | --- | --- | --- |",
    ]
    progress(f"reading {total:,} events: raw ordered consumer, then follow_raw")
    raw, ours = await raw_read(url, settings, total), await store_read(url, settings)
    rows.append(
        f"| read only: `follow_raw`, the projector's input (events/s) | {total / raw:,.0f} "
        f"| {total / ours:,.0f} | {raw / ours:.2f} |"
    )
    with tempfile.TemporaryDirectory(prefix="tl-bench-views-") as tmp:
        for backend in backends:
            progress(f"projecting {total:,} events into {backend}")
            raw = await raw_read(url, settings, total)
            seconds = await project(url, settings, _config(backend, Path(tmp)))
            rows.append(
                f"| projection throughput into {backend} (events/s) | {total / raw:,.0f} "
                f"| {total / seconds:,.0f} | {raw / seconds:.2f} |"
            )
            progress(f"rebuilding {total:,} events in {backend}")
            raw = await raw_read(url, settings, total)
            seconds = await rebuild_time(url, settings, _config(backend, Path(tmp)))
            rows.append(
                f"| rebuild of {total:,} events, {backend} (s) | {raw:.2f} | {seconds:.2f} "
                f"| {seconds / raw:.1f}x the raw read |"
            )
    if "postgres" not in backends:
        rows.append(f"| PostgreSQL | not measured: no server at {PG_URL.split('@')[-1]} | | |")
    return rows
