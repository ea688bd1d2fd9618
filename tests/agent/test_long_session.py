"""A 1,000-turn session in memory, built by appending recorded turns (tests/agent/
longsession.py), then real turns through the worker and the commands on top of it:
each turn's state load reads only the events since the last one, and state, history,
as-of, fork, cancel mid-turn and an interrupted turn's next attempt are right."""

from __future__ import annotations

from typing import Final

import pytest

from tests.agent.fakes import PROVIDER, Hold, WatchedQueue, answer
from tests.agent.longsession import build_session, turn_id
from tests.agent.test_memory_turns import Agent
from tests.events.test_sessions import CountingStore
from threadline.events.conversation import ToolTurn
from threadline.events.fold import fold
from threadline.events.schema import TurnCancelled, TurnCompleted, TurnStarted
from threadline.events.sessions import SessionCache
from threadline.events.workqueue import MemoryWorkQueue
from threadline.services.commands import CancelTurn, Fork, SendMessage, SessionCommands
from threadline.services.gateway.history import read_session, session_detail

TURNS: Final = 1000
ALICE: Final = "user:alice"


@pytest.fixture
async def agent() -> Agent:
    agent = Agent(store=CountingStore())
    await build_session(agent.store, "long", TURNS, provider=PROVIDER, tool_every=25)
    return agent


async def caught_up(agent: Agent) -> None:
    """Wait until the worker has settled the recorded turns' messages (the in-memory
    queue delivers the log's user messages from its start; their turns have ended)."""
    await agent.queue.until(lambda settled: len(settled) >= TURNS)


def counting(agent: Agent) -> CountingStore:
    assert isinstance(agent.store, CountingStore)
    return agent.store


async def test_each_turn_reads_only_what_is_new(agent: Agent) -> None:
    store = counting(agent)
    agent.model.script(answer("one"), answer("two"), answer("three"))
    reads: list[int] = []
    written: list[int] = []  # the events each turn wrote
    async with agent.worker() as worker:
        await caught_up(agent)  # the worker's cache folded the session once, meanwhile
        assert worker.sessions.stats.misses == 1
        cold = store.reads()
        for i in range(3):
            asked = await agent.say("long", f"q{i}", f"n{i}")
            written.append(len(await agent.until_terminal("long", f"n{i}")))
            await agent.queue.until(
                lambda settled, p=asked.position: any(s.position == p for s in settled)
            )
            reads.append(store.reads())
        applied = worker.sessions.stats.applied
    assert cold == 1 + 4 * TURNS + 2 * (TURNS // 25)  # every event, once
    # then each turn reads nothing: the cache folded what the turns before it appended,
    # as they appended it (80da7c0), and the turn's own message as it was delivered
    assert reads == [0, 0, 0] and max(written) <= 5
    assert applied == cold + len(reads) + sum(written)
    last = agent.model.requests[-1].messages
    assert [m.text for m in last[-3:] if not isinstance(m, ToolTurn)] == ["q1", "two", "q2"]
    state = fold(await store.load("long"))
    assert [state.status(f"n{i}") for i in range(3)] == ["completed"] * 3
    agent.model.verify()


async def test_history_and_as_of_on_a_long_session(agent: Agent) -> None:
    records = await agent.store.load("long")
    cache = SessionCache(agent.store)
    now = await read_session(cache, "long")
    assert now == session_detail(fold(records))
    assert now is not None and len(now.turns) == TURNS
    assert len(now.messages) == 2 * TURNS + 2 * (TURNS // 25)  # tool turns: 2 more each
    middle = records[len(records) // 2].version
    assert await read_session(cache, "long", at=middle) == session_detail(fold(records[:middle]))


async def test_a_fork_of_a_long_session(agent: Agent) -> None:
    commands = SessionCommands(agent.store)
    records = await agent.store.load("long")
    at = records[-1].version - 4 * 10  # ten turns before the end
    made = await commands.fork(Fork(source="long", version=at, actor=ALICE, key="f1"))
    fork = await commands.state(made.session)
    source = fold(records[:at])
    assert fork.committed == source.committed and len(fork.turns) == TURNS - 10
    assert fork.forked_from is not None and fork.forked_from.version == at


async def test_cancel_mid_turn_on_a_long_session(agent: Agent) -> None:
    commands = SessionCommands(agent.store)
    hold = Hold()
    agent.model.script(answer("half an ", hold, "answer never sent"))
    asked = await commands.post_message(SendMessage(session="long", actor=ALICE, text="stop?"))
    assert asked.turn is not None
    async with agent.worker():
        await hold.reached.wait()
        stop = CancelTurn(session="long", actor=ALICE, key="stop-1")
        requested = await commands.cancel(stop)
        events = await agent.until_terminal("long", asked.turn)
        assert await commands.cancel(stop) == requested  # a retry, after the end
    ended = events[-1].event
    assert isinstance(ended, TurnCancelled) and ended.partial_text == "half an "
    state = await commands.state("long")
    assert state.status(asked.turn) == "cancelled" and state.is_terminal(turn_id(TURNS - 1))
    assert state == fold(await agent.store.load("long"))


async def test_an_interrupted_turn_resumes_as_a_new_attempt(agent: Agent) -> None:
    agent.queue = WatchedQueue(MemoryWorkQueue(agent.store, ack_wait_s=0.5))
    hold = Hold()
    agent.model.script(answer("partial", hold, "never sent"), answer("whole answer"))
    await agent.say("long", "go", "resumed")
    async with agent.worker(grace_s=0):  # stops at once: its turn is interrupted
        await hold.reached.wait()
    async with agent.worker():  # a new worker, a cold cache
        events = await agent.until_terminal("long", "resumed")
    started = [r.event.attempt for r in events if isinstance(r.event, TurnStarted)]
    assert started == [1, 2] and isinstance(events[-1].event, TurnCompleted)
    state = fold(await agent.store.load("long"))
    assert state.turns["resumed"].attempt == 2 and len(state.turns) == TURNS + 1
    assert state.committed[-1].text == "whole answer"  # type: ignore[union-attr]
