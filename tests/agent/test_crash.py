"""Crash safety: kill -9 an agent process mid-stream; another finishes every turn exactly once."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.procs import spawn_agent
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS, SessionStarted, UserMessage
from threadline.events.store import NewEvent, Recorded
from threadline.services.devmodel import DevModelSettings, serve


@pytest.fixture
async def paced_devmodel() -> AsyncIterator[str]:
    async with serve(DevModelSettings(ttft_ms=0, tokens_per_second=100)) as url:
        yield url


async def run_round(
    store: JetStreamEventStore, devmodel: str, data: Path, tag: str, turns: int
) -> list[Recorded]:
    after = await store.last_position()
    agent = await spawn_agent(store, devmodel, data)
    for i in range(turns):
        session = f"{tag}s{i}"
        await store.append(session, NewEvent(event=SessionStarted(owner="o", provider="dev")))
        await store.append(
            session, NewEvent(event=UserMessage(text="go [[words:80]]"), turn=f"{tag}t{i}")
        )
    seen: list[Recorded] = []
    streaming: set[str] = set()
    terminal: set[str] = set()
    replacement: asyncio.subprocess.Process | None = None
    async with asyncio.timeout(60):
        async for rec in store.follow_all(after=after):
            seen.append(rec)
            if rec.kind == "text_delta" and rec.turn:
                streaming.add(rec.turn)
            if replacement is None and len(streaming) >= max(1, turns // 2):
                agent.send_signal(signal.SIGKILL)  # mid-stream, no goodbye
                await agent.wait()
                replacement = await spawn_agent(store, devmodel, data)
            if rec.kind in TERMINAL_KINDS and rec.turn:
                terminal.add(rec.turn)
                if len(terminal) == turns:
                    break
    assert replacement is not None
    replacement.send_signal(signal.SIGTERM)
    await replacement.wait()
    return seen


@pytest.mark.parametrize("round_", range(3))
async def test_kill_minus_nine_mid_stream(
    js_store: JetStreamEventStore, paced_devmodel: str, tmp_path: Path, round_: int
) -> None:
    turns = 8
    seen = await run_round(js_store, paced_devmodel, tmp_path, f"r{round_}", turns)
    terminals = Counter(r.turn for r in seen if r.kind in TERMINAL_KINDS)
    assert len(terminals) == turns and set(terminals.values()) == {1}  # exactly one each
    assert {r.kind for r in seen if r.kind in TERMINAL_KINDS} == {"turn_completed"}
    steps = Counter(
        (r.turn, r.attempt, r.event.step) for r in seen if r.kind == "assistant_message"
    )  # type: ignore[union-attr]
    assert set(steps.values()) == {1}  # no duplicate AssistantMessage
    restarted = {r.turn for r in seen if r.kind == "turn_started" and (r.attempt or 0) > 1}
    assert restarted  # the kill really interrupted turns, which were taken over
    # nothing acknowledged was lost: the stream holds every event we saw, in order
    positions = [r.position for r in seen]
    assert positions == sorted(positions)
    for rec in seen[:: max(1, len(seen) // 20)]:
        assert (await js_store.get(rec.position)).raw == rec.raw
