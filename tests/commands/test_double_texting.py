"""Double texting in the command layer (in-memory store): what a message sent while a turn
is open does under each policy, the deployment's default and the session's own choice,
retries, two messages at once, and what the fold leaves in the model's context after a
rollback. The whole stack (agent, dev model) is in tests/agent/test_double_texting.py."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.commands.test_commands import ALICE, CATALOG, kinds, run_turn
from threadline.base.config import DoubleTexting, load_settings
from threadline.base.errors import TurnRunning
from threadline.events.conversation import AssistantTurn, UserTurn
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import CancelRequested, TextDelta, TurnCancelled
from threadline.events.store import NewEvent
from threadline.services.commands import (
    Catalog,
    Retry,
    SendMessage,
    SessionCommands,
    StartSession,
)


def commands_with(store: MemoryEventStore, default: DoubleTexting = "enqueue") -> SessionCommands:
    return SessionCommands(
        store, Catalog(CATALOG.providers, CATALOG.tool_servers, double_texting=default)
    )


async def session_with(commands: SessionCommands, policy: DoubleTexting | None) -> str:
    start = StartSession(owner="alice", actor=ALICE, double_texting=policy)
    return (await commands.create_session(start)).session


async def say(commands: SessionCommands, session: str, text: str, key: str = "") -> str:
    rec = await commands.post_message(SendMessage(session=session, actor=ALICE, text=text, key=key))
    assert rec.turn is not None
    return rec.turn


async def stream_some(store: MemoryEventStore, session: str, turn: str, text: str) -> None:
    """What the agent appends while a turn runs: a delta."""
    new = NewEvent(event=TextDelta(text=text), actor="agent:w", turn=turn, attempt=1)
    await store.append(session, new)


async def cancelled(store: MemoryEventStore, session: str, turn: str, partial: str) -> None:
    """What the agent appends when a stop reaches a running turn."""
    ended = TurnCancelled(partial_text=partial, reason="stop requested")
    await store.append(session, NewEvent(event=ended, actor="agent:w", turn=turn, attempt=1))


async def test_enqueue_is_the_default_and_queues_behind_the_running_turn() -> None:
    store = MemoryEventStore()
    commands = commands_with(store)
    session = await session_with(commands, None)
    first = await say(commands, session, "one")
    await run_turn(store, session, first, end=False)
    second = await say(commands, session, "two")
    state = await commands.state(session)
    assert state.in_flight == first and state.pending == (second,)
    assert not state.turns[first].cancel_requested
    assert (await kinds(store, session))["cancel_requested"] == 0


@pytest.mark.parametrize(("default", "chosen"), [("reject", None), ("enqueue", "reject")])
async def test_reject_refuses_a_message_while_a_turn_is_open(
    default: DoubleTexting, chosen: DoubleTexting | None
) -> None:
    store = MemoryEventStore()
    commands = commands_with(store, default)
    session = await session_with(commands, chosen)
    first = await say(commands, session, "one", key="k1")
    before = await kinds(store, session)
    with pytest.raises(TurnRunning):  # pending counts: the agent has not started it yet
        await say(commands, session, "two")
    await run_turn(store, session, first, end=False)
    with pytest.raises(TurnRunning):
        await say(commands, session, "two")
    assert await kinds(store, session) == before + Counter({"turn_started": 1})
    # the accepted message retried while its turn runs: its own record, not a refusal
    assert await say(commands, session, "one", key="k1") == first
    await run_turn(store, session, first)  # (a second start: ignored; then the end)
    second = await say(commands, session, "two")
    with pytest.raises(TurnRunning):  # asking an ended turn again is a new message too
        await commands.retry(Retry(session=session, actor=ALICE, turn=first))
    assert second != first


async def test_the_session_choice_beats_the_deployment_default() -> None:
    store = MemoryEventStore()
    commands = commands_with(store, "reject")
    session = await session_with(commands, "enqueue")
    await say(commands, session, "one")
    await say(commands, session, "two")  # not refused
    assert len((await commands.state(session)).pending) == 2


def test_the_deployment_default_from_the_environment() -> None:
    settings = load_settings(env={"THREADLINE_DOUBLE_TEXTING": "rollback"})
    assert Catalog.from_settings(settings).double_texting == "rollback"
    assert Catalog.from_settings(load_settings(env={})).double_texting == "enqueue"


async def test_two_messages_at_once_under_reject_one_wins() -> None:
    store = MemoryEventStore()
    commands = commands_with(store)
    session = await session_with(commands, "reject")
    outcomes = await asyncio.gather(
        *(say(commands, session, f"m{i}") for i in range(5)), return_exceptions=True
    )
    assert sum(isinstance(o, str) for o in outcomes) == 1
    assert sum(isinstance(o, TurnRunning) for o in outcomes) == 4
    assert (await kinds(store, session))["user_message"] == 1


@pytest.mark.parametrize("policy", ["interrupt", "rollback"])
async def test_a_message_stops_every_open_turn_once(policy: DoubleTexting) -> None:
    store = MemoryEventStore()
    commands = commands_with(store)
    session = await session_with(commands, policy)
    first = await say(commands, session, "one")
    await run_turn(store, session, first, end=False)
    second = await say(commands, session, "two", key="k2")
    third = await say(commands, session, "three")
    records = await store.load(session)
    stops = [r for r in records if isinstance(r.event, CancelRequested)]
    # "two" stopped "one"; "three" stopped "two" (and not "one" again)
    assert [r.turn for r in stops] == [first, second]
    assert all(r.event.rollback == (policy == "rollback") for r in stops)
    assert all(r.envelope.actor == ALICE and r.envelope.key == f"{policy}:{r.turn}" for r in stops)
    state = await commands.state(session)
    assert state.turns[first].cancel_requested and state.turns[second].cancel_requested
    assert not state.turns[third].cancel_requested
    # a retry of "two" appends nothing, however the session moved on
    assert await say(commands, session, "two", key="k2") == second
    assert (await kinds(store, session))["cancel_requested"] == 2


@pytest.mark.parametrize(("policy", "kept"), [("interrupt", True), ("rollback", False)])
async def test_what_the_model_sees_of_a_stopped_turn(policy: DoubleTexting, kept: bool) -> None:
    store = MemoryEventStore()
    commands = commands_with(store)
    session = await session_with(commands, policy)
    first = await say(commands, session, "one")
    await run_turn(store, session, first, end=False)
    await stream_some(store, session, first, "half an ans")
    second = await say(commands, session, "two")
    await cancelled(store, session, first, "half an ans")
    state = await commands.state(session)
    assert state.turns[first].status == "cancelled"
    assert state.turns[first].rollback == (not kept)
    expected = [UserTurn(text="one"), AssistantTurn(text="half an ans")] if kept else []
    assert list(state.committed) == expected
    assert state.turn_messages(second) == (UserTurn(text="two"),)
    # the history shows the stopped turn either way, its partial answer too
    texts = [entry.message for entry in state.transcript()]
    assert texts == [UserTurn(text="one"), UserTurn(text="two"), AssistantTurn(text="half an ans")]
