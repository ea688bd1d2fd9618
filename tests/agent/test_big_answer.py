"""An answer larger than one event may be (issue 12 #8): the stream takes events of at most
16 KB here, the dev model answers some 100 KB at once. The turn ends once, promptly, with
the whole text recoverable from the log (deltas split to fit; a step too large to repeat
in its ``assistant_message`` keeps its text in its deltas, which the fold reads), and the
session's next turn runs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.conftest import Harness, agent_settings_for
from tests.conftest import fresh_stream
from threadline.events.fold import fold
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import AssistantMessage, GenerationParams, TurnStarted
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings
from threadline.services.devmodel.script import answer_for

LIMIT = 16 * 1024
BIG = "[[words:15000]]"


@pytest.fixture
async def small_events(nats_url: str, devmodel_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    store = await JetStreamEventStore.connect(
        nats_url, fresh_stream(max_event_bytes=LIMIT), heartbeat_s=0.5
    )
    agent = AgentSettings(worker="test", retry_base_s=0.01, delta_window_s=0.005)
    try:
        async with serve_agent(
            agent_settings_for(str(tmp_path)), store, devmodel_url=devmodel_url, agent=agent,
            env={}, ack_wait_s=5,
        ):  # fmt: skip
            yield Harness(store)
    finally:
        await store.close()


async def test_an_answer_over_the_event_limit_ends_once_and_whole(
    small_events: Harness,
) -> None:
    harness, expected = small_events, answer_for(BIG)
    assert len(expected) > 5 * LIMIT
    await harness.start("big", tools=False, params=GenerationParams(max_tokens=20_000))
    await harness.say("big", BIG, "t1")
    began = time.monotonic()
    events = await harness.until_terminal("big", "t1", wait_s=20)
    assert events[-1].kind == "turn_completed", events[-1]
    assert time.monotonic() - began < 10  # not after redeliveries
    assert sum(isinstance(e.event, TurnStarted) for e in events) == 1
    assert all(len(e.raw) <= LIMIT for e in events)
    state = fold(await harness.store.load("big"))
    (step,) = state.turns["t1"].steps
    assert isinstance(step.event, AssistantMessage) and step.event.text == expected
    assert state.committed[-1].text == expected  # type: ignore[union-attr]
    await harness.say("big", "and now?", "t2")
    after = await harness.until_terminal("big", "t2", wait_s=20)
    assert after[-1].kind == "turn_completed"
