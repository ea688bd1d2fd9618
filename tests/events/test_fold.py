"""The session model on its own: no store, no I/O."""

from __future__ import annotations

import itertools
import typing
from pathlib import Path

import msgspec
import pytest

from threadline.events import codec
from threadline.events.conversation import AssistantTurn, ToolTurn, UserTurn
from threadline.events.fold import SessionState, fold
from threadline.events.schema import (
    EVENT_TYPES,
    AssistantMessage,
    CancelRequested,
    Envelope,
    Event,
    Fallback,
    ReasoningDelta,
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
from threadline.events.turns import Phase, judge, transition

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
    assert state.committed == []  # nothing joins until the turn ends...
    assert (
        *state.committed,
        *state.turn_messages("t1"),
    ) == (  # ...but the running turn sees its own steps
        UserTurn(text="add"),
        AssistantTurn(text="Let me ", tool_calls=(call,)),
        ToolTurn(call_id="c1", tool="srv__add", content="2"),
        AssistantTurn(text="It is 2."),
    )
    state = fold([rec(TurnCompleted(), "t1", 1)], state)
    assert state.committed == [
        UserTurn(text="add"),
        AssistantTurn(text="Let me ", tool_calls=(call,)),
        ToolTurn(call_id="c1", tool="srv__add", content="2"),
        AssistantTurn(text="It is 2."),
    ]
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
    assert state.committed[-1] == AssistantTurn(text="Hello")


def test_failed_turn_adds_nothing_and_a_second_terminal_is_an_anomaly() -> None:
    state = session(
        rec(UserMessage(text="hi"), "t1"),
        started_turn("t1"),
        rec(AssistantMessage(text="half"), "t1", 1),
        rec(TurnFailed(error="network", message="connection dropped"), "t1", 1),
        rec(TurnCompleted(), "t1", 1),
    )
    assert state.committed == []  # its question leaves the model's context (a retry asks it)
    assert state.transcript()[0].message == UserTurn(text="hi")  # but stays in the history
    assert state.status("t1") == "failed" and state.turns["t1"].error == "connection dropped"
    assert state.anomalies == ["second terminal event for turn t1"]


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
    roles = [type(m).__name__ for m in state.committed]
    assert roles == ["UserTurn", "AssistantTurn", "ToolTurn", "AssistantTurn"]
    assert state.committed[-1] == AssistantTurn(text="Half an ans")  # unanswered call b dropped
    assert state.turns["t1"].cancel_requested and state.status("t1") == "cancelled"


def test_turns_queue_in_order_and_fallbacks_are_kept() -> None:
    state = session(
        rec(UserMessage(text="one"), "t1"),
        rec(UserMessage(text="two"), "t2"),
        started_turn("t1"),
        rec(Fallback(fallback="tools_disabled", reason="no tools"), "t1", 1),
    )
    assert state.in_flight == "t1" and state.pending == ("t2",)
    assert state.turns["t1"].fallbacks[0].fallback == "tools_disabled"
    assert state.turns["t1"].fallbacks[0].reason == "no tools"


def test_a_copy_is_independent_and_applying_grows_the_state_in_place() -> None:
    before = session(rec(UserMessage(text="one"), "t1"))
    snapshot = before.copy()
    committed, turns = before.committed, before.turns
    after = fold([rec(UserMessage(text="two"), "t2"), started_turn("t1")], before)
    assert after is before and after.committed is committed and after.turns is turns
    assert after.pending == ("t2",) and after.in_flight == "t1"
    assert snapshot.pending == ("t1",) and snapshot.in_flight is None
    assert snapshot.turns["t1"].status == "pending" and snapshot != after


def test_a_message_sent_during_a_turn_is_not_part_of_that_turns_conversation() -> None:
    state = session(
        rec(UserMessage(text="first"), "t1"),
        started_turn("t1"),
        rec(UserMessage(text="second"), "t2"),
        rec(AssistantMessage(text="answer one"), "t1", 1),
    )
    assert (*state.committed, *state.turn_messages("t1")) == (
        UserTurn(text="first"),
        AssistantTurn(text="answer one"),
    )
    state = fold([rec(TurnCompleted(), "t1", 1)], state)
    assert (*state.committed, *state.turn_messages("t2")) == (
        UserTurn(text="first"),
        AssistantTurn(text="answer one"),
        UserTurn(text="second"),
    )


def test_a_stale_turn_started_and_its_events_are_ignored() -> None:
    state = session(
        rec(UserMessage(text="hi"), "t1"),
        started_turn("t1", 2),
        started_turn("t1", 1),  # an older attempt's start arriving late: not a restart
        rec(TextDelta(text="old"), "t1", 1),
        rec(TextDelta(text="new"), "t1", 2),
    )
    turn = state.turns["t1"]
    assert (turn.status, turn.attempt, turn.partial_text) == ("running", 2, "new")
    assert state.anomalies == []


def test_fallbacks_are_the_counting_attempts_only() -> None:
    """The rule (docs/events.md): a new attempt drops everything of the one it
    replaces, its fallbacks included."""
    state = session(
        rec(UserMessage(text="hi"), "t1"),
        started_turn("t1", 1),
        rec(Fallback(fallback="tools_disabled", reason="no tools"), "t1", 1),
        rec(Fallback(fallback="retry", reason="stream dropped", attempt=2), "t1", 1),
        started_turn("t1", 2),
        rec(Fallback(fallback="provider_switched", reason="429", to="b"), "t1", 2),
    )
    turn = state.turns["t1"]
    assert [f.fallback for f in turn.fallbacks] == ["provider_switched"]


def test_a_cancel_without_a_turn_stops_the_running_one() -> None:
    state = session(
        rec(UserMessage(text="one"), "t1"),
        rec(UserMessage(text="two"), "t2"),
        started_turn("t1"),
        rec(CancelRequested(reason="stop")),
    )
    assert state.turns["t1"].cancel_requested and not state.turns["t2"].cancel_requested


def test_the_transcript_is_every_counting_message_in_log_order() -> None:
    """User messages, steps and tool results with full content (a failed turn's too), a
    cancelled turn's partial text; a superseded attempt's steps are gone."""
    state = session(
        rec(UserMessage(text="one"), "t1"),
        started_turn("t1", 1),
        rec(AssistantMessage(text="dropped"), "t1", 1),
        started_turn("t1", 2),
        rec(ToolCall(call_id="c", tool="x"), "t1", 2),
        rec(AssistantMessage(text="", finish_reason="tool_calls"), "t1", 2),
        rec(UserMessage(text="two"), "t2"),  # sent while t1 runs
        rec(ToolResult(call_id="c", tool="x", content="r" * 600), "t1", 2),
        rec(AssistantMessage(text="done", step=1), "t1", 2),
        rec(TurnFailed(error="network", message="gone"), "t1", 2),
        started_turn("t2"),
        rec(TurnCancelled(partial_text="Half"), "t2", 1),
    )
    said = [(e.turn, type(e.message).__name__, e.version) for e in state.transcript()]
    assert [(t, m) for t, m, _ in said] == [
        ("t1", "UserTurn"), ("t1", "AssistantTurn"), ("t2", "UserTurn"), ("t1", "ToolTurn"),
        ("t1", "AssistantTurn"), ("t2", "AssistantTurn"),
    ]  # fmt: skip
    assert [v for _, _, v in said] == sorted(v for _, _, v in said)
    tool = state.transcript()[3].message
    assert isinstance(tool, ToolTurn) and tool.content == "r" * 600
    first_step = state.transcript()[1].message
    assert isinstance(first_step, AssistantTurn) and first_step.tool_calls[0].call_id == "c"
    assert state.committed == [UserTurn(text="two"), AssistantTurn(text="Half")]
    assert state.turns["t1"].error == "gone" and state.turns["t2"].ending is not None


def test_superseded_and_settled_records() -> None:
    records = [
        rec(SessionStarted(owner="alice")),
        rec(UserMessage(text="q"), "t1"),
        started_turn("t1", 1),
        rec(TextDelta(text="a"), "t1", 1),
        started_turn("t1", 2),
        rec(AssistantMessage(text="b"), "t1", 2),
        rec(TurnCompleted(), "t1", 2),
        rec(TurnFailed(error="internal", message="late"), "t1", 2),  # an anomaly
        rec(UserMessage(text="open"), "t2"),
    ]
    state = fold(records)
    assert [state.superseded(r) for r in records] == [False, False, True, True] + [False] * 5
    assert [state.settled(r) for r in records] == [False, True, False, False] + [True] * 3 + [
        False,
        False,
    ]
    assert state.anomalies == ["second terminal event for turn t1"]


FIXTURES = Path(__file__).parent / "fixtures" / "schema-1.jsonl"


def every_kind() -> list[Event]:
    events = [codec.decode(line).event for line in FIXTURES.read_bytes().splitlines()]
    assert {type(e) for e in events} == set(EVENT_TYPES) == set(typing.get_args(Event))
    return events


PHASES = [None, Phase(), Phase("running", 1), Phase("running", 2), Phase("completed", 1)]


@pytest.mark.parametrize("phase", PHASES)
def test_every_kind_of_the_union_has_a_verdict(phase: Phase | None) -> None:
    """The turn rules and the fold match the event union exhaustively (``assert_never``:
    a new kind fails ``make typecheck`` until every consumer handles it); here, every
    kind in every phase gets a verdict and a phase, and never raises."""
    for event in every_kind():
        for attempt in (None, 1, 2):
            verdict, after = transition(phase, event, attempt)
            assert verdict == judge(phase, event, attempt)
            assert after is not None or verdict == "ignored"


def test_the_fold_applies_every_kind_in_every_phase() -> None:
    prefixes = [
        [rec(SessionStarted(owner="a"))],
        [rec(UserMessage(text="q"), "t1")],
        [rec(UserMessage(text="q"), "t1"), started_turn("t1")],
        [rec(UserMessage(text="q"), "t1"), started_turn("t1"), rec(TurnCompleted(), "t1", 1)],
    ]
    for prefix in prefixes:
        for event in every_kind():
            state = fold(prefix)
            more = [rec(event, "t1", 1), rec(event, None, None)]
            assert fold(more, state).version == more[-1].version


def test_the_state_is_comparable_and_encodable_for_callers() -> None:
    state = session(rec(UserMessage(text="hi"), "t1"), started_turn("t1"))
    assert fold([], state.copy()) == state
    sent = msgspec.json.encode((*state.committed, *state.turn_messages("t1")))
    assert msgspec.json.decode(sent) == [{"role": "user", "text": "hi"}]


def test_a_step_too_large_for_its_event_takes_its_text_from_its_deltas() -> None:
    """The agent leaves an oversize step's text in its deltas (docs/events.md): the
    fold reads it from them, for the step and for a cancelled turn's partial text."""
    state = session(
        rec(UserMessage(text="long"), "t1"),
        started_turn("t1"),
        rec(ReasoningDelta(text="hm"), "t1", 1),
        rec(TextDelta(text="a" * 5), "t1", 1),
        rec(TextDelta(text="b" * 5), "t1", 1),
        rec(AssistantMessage(text=""), "t1", 1),
        rec(TurnCompleted(), "t1", 1),
        rec(UserMessage(text="again"), "t2"),
        started_turn("t2"),
        rec(TextDelta(text="cut sho"), "t2", 1),
        rec(TurnCancelled(partial_text=""), "t2", 1),
    )
    step = state.turns["t1"].steps[0]
    assert isinstance(step.event, AssistantMessage) and step.event.text == "aaaaabbbbb"
    assert step.message == AssistantTurn(text="aaaaabbbbb", reasoning="hm")
    assert state.committed[-1] == AssistantTurn(text="cut sho")
    assert [e.message for e in state.transcript()][-1] == AssistantTurn(text="cut sho")
