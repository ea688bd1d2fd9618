"""Tool approvals in the command layer and the session model (in-memory store): the first
answer wins, two answers at once, an answer after the deadline, a stop while a call
waits, and what the fold says about a turn that waits. The agent's side (waiting
durably, resuming, kill -9) is in tests/agent/test_approvals.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.commands.test_commands import ALICE, CATALOG, run_turn
from threadline.base.errors import ApprovalDecided, ApprovalNotFound, TurnFinished
from threadline.events.fold import SessionState
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    AssistantMessage,
    ToolCall,
    ToolCallRef,
)
from threadline.events.store import NewEvent
from threadline.services.agent.approvals import ApprovalRules
from threadline.services.commands import (
    AnswerApproval,
    CancelTurn,
    SendMessage,
    SessionCommands,
    StartSession,
)

BOB = "user:bob"


async def waiting(store: MemoryEventStore, commands: SessionCommands, deadline: int = 0) -> str:
    """A session whose turn waits for approval of call ``c1``, as the agent leaves it."""
    session = (await commands.create_session(StartSession(owner="alice", actor=ALICE))).session
    rec = await commands.post_message(SendMessage(session=session, actor=ALICE, text="go"))
    turn = rec.turn
    assert turn is not None
    await run_turn(store, session, turn, end=False)
    call = ToolCallRef(call_id="c1", tool="threadline__echo", arguments={"text": "hi"})
    events = [
        ToolCall(call_id="c1", tool=call.tool, arguments=call.arguments),
        AssistantMessage(text="", finish_reason="tool_calls", tool_calls=(call,)),
        ApprovalRequested(
            call_id="c1", tool=call.tool, arguments=call.arguments, deadline=deadline
        ),
    ]
    await store.append(
        session, [NewEvent(event=e, actor="agent:w", turn=turn, attempt=1) for e in events]
    )
    return session


def answer(session: str, approved: bool, actor: str = ALICE, reason: str = "") -> AnswerApproval:
    return AnswerApproval(
        session=session, actor=actor, call_id="c1", approved=approved, reason=reason
    )


async def test_a_waiting_turn_in_the_session_model() -> None:
    store = MemoryEventStore()
    commands = SessionCommands(store, CATALOG)
    session = await waiting(store, commands)
    state = await commands.state(session)
    (turn,) = state.turns.values()
    assert turn.status == "running" and turn.awaiting == ("c1",) and not turn.resumable
    assert turn.unanswered[1][0].call_id == "c1"
    rec = await commands.answer_approval(answer(session, True, reason="fine"))
    assert isinstance(rec.event, ApprovalGranted) and rec.envelope.actor == ALICE
    turn = (await commands.state(session)).turns[turn.turn_id]
    assert turn.awaiting == () and turn.resumable and turn.approvals["c1"].granted


async def test_the_first_answer_wins_and_the_same_answer_again_is_a_retry() -> None:
    store = MemoryEventStore()
    commands = SessionCommands(store, CATALOG)
    session = await waiting(store, commands)
    first = await commands.answer_approval(answer(session, False, reason="no"))
    assert await commands.answer_approval(answer(session, False, reason="no")) == first
    with pytest.raises(ApprovalDecided):
        await commands.answer_approval(answer(session, True))
    with pytest.raises(ApprovalDecided):  # another person, the same words
        await commands.answer_approval(answer(session, False, actor=BOB, reason="no"))
    with pytest.raises(ApprovalNotFound):
        await commands.answer_approval(
            AnswerApproval(session=session, actor=ALICE, call_id="nope", approved=True)
        )


async def test_two_answers_at_once_one_wins() -> None:
    store = MemoryEventStore()
    commands = SessionCommands(store, CATALOG)
    session = await waiting(store, commands)
    outcomes = await asyncio.gather(
        *(commands.answer_approval(answer(session, i % 2 == 0, reason=str(i))) for i in range(6)),
        return_exceptions=True,
    )
    assert sum(isinstance(o, ApprovalDecided) for o in outcomes) == 5
    decisions = [r for r in await store.load(session) if r.kind.startswith("approval_")]
    assert [r.kind for r in decisions] == ["approval_requested", decisions[1].kind]
    assert len(decisions) == 2


async def test_an_answer_after_the_deadline_finds_it_denied() -> None:
    store = MemoryEventStore()
    commands = SessionCommands(store, CATALOG)
    session = await waiting(store, commands, deadline=time.time_ns() // 1000 - 1)
    with pytest.raises(ApprovalDecided):
        await commands.answer_approval(answer(session, True))
    (*_, denial) = await store.load(session)
    assert isinstance(denial.event, ApprovalDenied) and denial.event.expired
    assert denial.envelope.actor == "system"


async def test_a_stop_while_a_call_waits_ends_the_turn_cancelled() -> None:
    store = MemoryEventStore()
    commands = SessionCommands(store, CATALOG)
    session = await waiting(store, commands)
    await commands.cancel(CancelTurn(session=session, actor=ALICE, reason="never mind"))
    state = await commands.state(session)
    (turn,) = state.turns.values()
    assert turn.status == "cancelled" and state.open_turns == {}
    *_, stop, ended = await store.load(session)
    assert stop.kind == "cancel_requested" and ended.kind == "turn_cancelled"
    assert ended.attempt == 1  # the attempt that waited: a worker resuming it is fenced off
    with pytest.raises(TurnFinished):
        await commands.answer_approval(answer(session, True))


def test_the_deployment_rules() -> None:
    rules = ApprovalRules(
        {
            "files": {"approval": "always"},
            "shell": {"approval": {"run": {"command": "^rm "}, "*": "never", "nuke": "always"}},
            "free": {"transport": "stdio"},
        }
    )
    plain, strict = SessionState(session="s"), SessionState(session="s", approval="always")

    def needs(tool: str, state: SessionState = plain, **arguments: object) -> bool:
        return rules.needs(state, ToolCallRef(call_id="c", tool=tool, arguments=arguments))

    assert needs("files__read") and needs("shell__nuke")
    assert needs("shell__run", command="rm -rf /") and not needs("shell__run", command="ls")
    assert not needs("shell__other") and not needs("free__x")
    assert needs("free__x", strict)  # the session's "always" beats every rule
