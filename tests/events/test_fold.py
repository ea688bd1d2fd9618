"""The session fold on its own: pure, no store, no I/O."""

from __future__ import annotations

import itertools

from threadline.events import codec
from threadline.events.conversation import AssistantTurn, ToolTurn, UserTurn
from threadline.events.fold import SessionState, evolve, fold
from threadline.events.schema import (
    AssistantMessage,
    CancelRequested,
    Envelope,
    Event,
    Fallback,
    SessionStarted,
    TextDelta,
    ToolCall,
    ToolCallRef,
    ToolResult,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UserMessage,
)
from threadline.events.store import Recorded

_version = itertools.count(1)


def rec(event: Event, turn: str | None = None, attempt: int | None = None) -> Recorded:
    v = next(_version)
    env = Envelope(
        schema=1, session="s", version=v, at=v, actor="x", key=f"k{v}", prev="",
        event=event, turn=turn, attempt=attempt,
    )  # fmt: skip
    data = codec.encode(env)
    return Recorded(v, env, codec.record_hash(data), data)


def started_turn(turn: str, attempt: int = 1) -> Recorded:
    return rec(TurnStarted(turn_id=turn, attempt=attempt, provider="dev", model="m"), turn, attempt)


def session(*records: Recorded) -> SessionState:
    return fold([rec(SessionStarted(owner="alice", system_prompt="Be brief.")), *records])


def test_settings_and_title_come_from_the_log() -> None:
    state = session(rec(UserMessage(text="Plan a trip\nto Rome"), "t1"))
    assert state.owner == "alice" and state.system_prompt == "Be brief."
    assert state.title == "Plan a trip"
    assert state.pending == ("t1",) and state.in_flight is None


def test_a_completed_tool_turn_becomes_conversation() -> None:
    call = ToolCallRef(call_id="c1", tool="srv__add", arguments={"a": 1})
    state = session(
        rec(UserMessage(text="add"), "t1"),
        started_turn("t1"),
        rec(TextDelta(text="Let me "), "t1", 1),
        rec(ToolCall(call_id="c1", tool="srv__add", arguments={"a": 1}), "t1", 1),
        rec(AssistantMessage(text="Let me ", finish_reason="tool_calls"), "t1", 1),
        rec(ToolResult(call_id="c1", tool="srv__add", content="2"), "t1", 1),
        rec(AssistantMessage(text="It is 2.", step=1), "t1", 1),
    )
    assert state.in_flight == "t1"
    assert state.messages == ()  # nothing joins until the turn ends...
    assert state.conversation_for("t1") == (  # ...but the running turn sees its own steps
        UserTurn(text="add"),
        AssistantTurn(text="Let me ", tool_calls=(call,)),
        ToolTurn(call_id="c1", tool="srv__add", content="2"),
        AssistantTurn(text="It is 2."),
    )
    state = fold([rec(TurnCompleted(), "t1", 1)], state)
    assert state.messages == (
        UserTurn(text="add"),
        AssistantTurn(text="Let me ", tool_calls=(call,)),
        ToolTurn(call_id="c1", tool="srv__add", content="2"),
        AssistantTurn(text="It is 2."),
    )
    assert state.status("t1") == "completed" and state.in_flight is None


def test_a_new_attempt_discards_the_old_attempts_partial_work() -> None:
    state = session(
        rec(UserMessage(text="hi"), "t1"),
        started_turn("t1", 1),
        rec(TextDelta(text="partial from attempt 1"), "t1", 1),
        started_turn("t1", 2),
        rec(TextDelta(text="late delta of attempt 1"), "t1", 1),
        rec(TextDelta(text="Hello"), "t1", 2),
    )
    assert state.turns["t1"].attempt == 2
    assert state.turns["t1"].partial_text == "Hello"
    state = fold(
        [rec(AssistantMessage(text="Hello"), "t1", 2), rec(TurnCompleted(), "t1", 2)], state
    )
    assert state.messages[-1] == AssistantTurn(text="Hello")


def test_failed_turn_adds_nothing_and_a_second_terminal_is_an_anomaly() -> None:
    state = session(
        rec(UserMessage(text="hi"), "t1"),
        started_turn("t1"),
        rec(AssistantMessage(text="half"), "t1", 1),
        rec(TurnFailed(error="network", message="connection dropped"), "t1", 1),
        rec(TurnCompleted(), "t1", 1),
    )
    assert state.messages == (UserTurn(text="hi"),)
    assert state.status("t1") == "failed" and state.turns["t1"].error == "connection dropped"
    assert state.anomalies == ("second terminal event for turn t1",)


def test_cancel_keeps_answered_steps_and_the_partial_text() -> None:
    state = session(
        rec(UserMessage(text="go"), "t1"),
        started_turn("t1"),
        rec(ToolCall(call_id="a", tool="x"), "t1", 1),
        rec(AssistantMessage(text="", finish_reason="tool_calls"), "t1", 1),
        rec(ToolResult(call_id="a", tool="x", content="ok"), "t1", 1),
        rec(ToolCall(call_id="b", tool="x", step=1), "t1", 1),
        rec(AssistantMessage(text="", finish_reason="tool_calls", step=1), "t1", 1),
        rec(CancelRequested(reason="stop"), "t1"),
        rec(TurnCancelled(partial_text="Half an ans", reason="stop"), "t1", 1),
    )
    roles = [type(m).__name__ for m in state.messages]
    assert roles == ["UserTurn", "AssistantTurn", "ToolTurn", "AssistantTurn"]
    assert state.messages[-1] == AssistantTurn(text="Half an ans")  # unanswered call b dropped
    assert state.turns["t1"].cancel_requested and state.status("t1") == "cancelled"


def test_turns_queue_in_order_and_fallbacks_are_kept() -> None:
    state = session(
        rec(UserMessage(text="one"), "t1"),
        rec(UserMessage(text="two"), "t2"),
        started_turn("t1"),
        rec(Fallback(fallback="tools_disabled", reason="no tools"), "t1", 1),
    )
    assert state.in_flight == "t1" and state.pending == ("t2",)
    assert state.turns["t1"].tools_disabled
    assert state.turns["t1"].fallbacks[0].reason == "no tools"


def test_evolve_does_not_modify_its_input() -> None:
    before = session(rec(UserMessage(text="one"), "t1"))
    snapshot = (before.messages, dict(before.turns), before.version)
    after = evolve(before, rec(UserMessage(text="two"), "t2").envelope, 99)
    assert (before.messages, dict(before.turns), before.version) == snapshot
    assert after.pending == ("t1", "t2") and after.position == 99


def test_a_message_sent_during_a_turn_is_not_part_of_that_turns_conversation() -> None:
    state = session(
        rec(UserMessage(text="first"), "t1"),
        started_turn("t1"),
        rec(UserMessage(text="second"), "t2"),
        rec(AssistantMessage(text="answer one"), "t1", 1),
    )
    assert state.conversation_for("t1") == (
        UserTurn(text="first"),
        AssistantTurn(text="answer one"),
    )
    state = fold([rec(TurnCompleted(), "t1", 1)], state)
    assert state.conversation_for("t2") == (
        UserTurn(text="first"),
        AssistantTurn(text="answer one"),
        UserTurn(text="second"),
    )
