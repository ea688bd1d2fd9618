"""A worker stopped (SIGSTOP) past its ack deadline is taken over; when it comes back
(SIGCONT) it stops those attempts (their heartbeats fail) and every append it still
tries into those turns is rejected (fenced off)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.procs import spawn_agent
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS, SessionStarted, TurnStarted, UserMessage
from threadline.events.store import NewEvent, Recorded
from threadline.services.devmodel import DevModelSettings, serve


@pytest.fixture
async def slow_devmodel() -> AsyncIterator[str]:
    async with serve(DevModelSettings(ttft_ms=0, tokens_per_second=20)) as url:
        yield url


async def test_stalled_worker_is_fenced_off(
    js_store: JetStreamEventStore, slow_devmodel: str, tmp_path: Path
) -> None:
    store, turns = js_store, 4
    after = await store.last_position()
    stalled = await spawn_agent(store, slow_devmodel, tmp_path, ack_wait=1)
    for i in range(turns):
        await store.append(f"st{i}", NewEvent(event=SessionStarted(owner="o", provider="dev")))
        await store.append(
            f"st{i}", NewEvent(event=UserMessage(text="go [[words:60]]"), turn=f"t{i}")
        )
    seen: list[Recorded] = []
    stalled_actor = ""
    taken_over: set[str] = set()
    other: asyncio.subprocess.Process | None = None
    async with asyncio.timeout(90):
        async for rec in store.follow_all(after=after):
            seen.append(rec)
            if other is None and rec.kind == "text_delta":
                stalled_actor = rec.envelope.actor
                stalled.send_signal(signal.SIGSTOP)  # past its ack deadline from here on
                other = await spawn_agent(store, slow_devmodel, tmp_path, ack_wait=1)
            if isinstance(rec.event, TurnStarted) and rec.event.attempt > 1:
                taken_over.add(rec.turn or "")
            if len({r.turn for r in seen if r.kind in TERMINAL_KINDS}) == turns:
                break
    assert other is not None and taken_over
    stalled.send_signal(signal.SIGCONT)
    assert stalled.stderr is not None
    fenced = 0
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(60):  # the comeback: one "taken over" per interrupted turn
            while fenced < len(taken_over):
                line = await stalled.stderr.readline()
                assert line, "the stalled worker exited before reporting"
                lines.append(line)
                # fenced on its next append, stopped by its heartbeat (the ack deadline
                # passed), or its in-flight publish timed out on resume
                fenced += any(
                    sign in line
                    for sign in (b"was taken over by attempt", b"heartbeat failed", b"postponed")
                )
    except TimeoutError:
        raise AssertionError(b"".join(lines[-30:]).decode()) from None
    for proc in (stalled, other):
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    everything = []
    for i in range(turns):
        everything += await store.load(f"st{i}")
    for turn in taken_over:
        takeover = next(
            r.version
            for r in everything
            if r.turn == turn and isinstance(r.event, TurnStarted) and r.event.attempt > 1
        )
        session = next(r.session for r in everything if r.turn == turn)
        late = [
            r for r in everything
            if r.session == session and r.version > takeover and r.envelope.actor == stalled_actor
        ]  # fmt: skip
        assert late == []  # 100% of the stalled worker's appends after the takeover rejected
    terminals = [r.turn for r in everything if r.kind in TERMINAL_KINDS]
    assert sorted(terminals) == sorted({f"t{i}" for i in range(turns)})  # exactly one each
