"""The session fold: pure functions from a session's events to its state.

``fold(records)`` gives what the agent needs to continue a session: its settings, the
conversation as a model must see it (completed steps with tool calls and results),
each turn's status, the turn in flight and the turns still waiting. No I/O.

Rules (see docs/events.md): events of an attempt older than the turn's newest
``TurnStarted`` are ignored; a turn's steps join the conversation only when the turn
completes (or, for a cancelled turn, its finished steps plus the partial text); a
second terminal event for a turn is kept as an anomaly, never applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec
from msgspec.structs import replace

from threadline.events.conversation import AssistantTurn, Message, ToolTurn, UserTurn
from threadline.events.schema import (
    AssistantMessage,
    CancelRequested,
    Envelope,
    Fallback,
    GenerationParams,
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

TurnStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class TurnState(msgspec.Struct, frozen=True, kw_only=True):
    turn_id: str
    user_text: str = ""
    status: TurnStatus = "pending"
    attempt: int = 0
    provider: str = ""
    model: str = ""
    cancel_requested: bool = False
    tools_disabled: bool = False
    partial_text: str = ""
    partial_reasoning: str = ""
    step_calls: tuple[ToolCallRef, ...] = ()
    staged: tuple[Message, ...] = ()
    fallbacks: tuple[Fallback, ...] = ()
    error: str = ""


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    session: str
    owner: str = ""
    title: str = ""
    provider: str = ""
    model: str = ""
    system_prompt: str = ""
    tool_servers: tuple[str, ...] = ()
    params: GenerationParams = msgspec.field(default_factory=GenerationParams)
    started: bool = False
    version: int = 0
    position: int = 0
    messages: tuple[Message, ...] = ()
    turns: dict[str, TurnState] = msgspec.field(default_factory=dict)
    order: tuple[str, ...] = ()
    anomalies: tuple[str, ...] = ()

    @property
    def in_flight(self) -> str | None:
        """The turn currently running, if any."""
        for turn_id in self.order:
            if self.turns[turn_id].status == "running":
                return turn_id
        return None

    @property
    def pending(self) -> tuple[str, ...]:
        """Turns with a user message that no attempt has started yet, oldest first."""
        return tuple(t for t in self.order if self.turns[t].status == "pending")

    def status(self, turn_id: str) -> TurnStatus | None:
        turn = self.turns.get(turn_id)
        return turn.status if turn else None

    def is_terminal(self, turn_id: str) -> bool:
        return self.status(turn_id) in TERMINAL

    def conversation_for(self, turn_id: str) -> tuple[Message, ...]:
        """What a model answering ``turn_id`` sees: the committed conversation, the
        turn's user message, and the steps the turn's current attempt has finished."""
        turn = self.turns[turn_id]
        return (*self.messages, UserTurn(text=turn.user_text), *turn.staged)


def fold(records: Iterable[Recorded], state: SessionState | None = None) -> SessionState:
    """Fold records (in version order) onto ``state`` (or a fresh one)."""
    for rec in records:
        if state is None:
            state = SessionState(session=rec.session)
        state = evolve(state, rec.envelope, rec.position)
    if state is None:
        raise ValueError("fold needs at least one record or an initial state")
    return state


def evolve(state: SessionState, env: Envelope, position: int = 0) -> SessionState:
    """The state after one more event. Pure: ``state`` is not modified."""
    state = replace(state, version=env.version, position=position or state.position)
    event = env.event
    if isinstance(event, SessionStarted):
        return _started(state, event)
    if isinstance(event, UserMessage):
        return _user_message(state, env, event)
    turn_id = env.turn
    if turn_id is None:
        return state
    turn = state.turns.get(turn_id) or TurnState(turn_id=turn_id)
    if isinstance(event, TurnStarted):
        return _turn_started(state, turn, event)
    if isinstance(event, CancelRequested):
        return _put(state, replace(turn, cancel_requested=True))
    if turn.status in TERMINAL:
        if isinstance(event, TurnCompleted | TurnFailed | TurnCancelled):
            return replace(
                state, anomalies=(*state.anomalies, f"second terminal event for turn {turn_id}")
            )
        return state  # late event of a finished turn: not part of the conversation
    if env.attempt is not None and env.attempt != turn.attempt:
        return state  # an older (superseded) attempt
    return _in_turn(state, turn, env)


def _started(state: SessionState, e: SessionStarted) -> SessionState:
    return replace(
        state,
        started=True,
        owner=e.owner,
        title=e.title,
        provider=e.provider,
        model=e.model,
        system_prompt=e.system_prompt,
        tool_servers=e.tool_servers,
        params=e.params,
    )


def _user_message(state: SessionState, env: Envelope, e: UserMessage) -> SessionState:
    """A user message joins the conversation when its turn ends (turns run in order),
    so a message sent while an earlier turn runs is not seen by that turn."""
    title = state.title or e.text.strip().splitlines()[0][:80] if e.text.strip() else state.title
    if env.turn is None:
        return replace(state, messages=(*state.messages, UserTurn(text=e.text)), title=title)
    if env.turn in state.turns:
        return replace(state, title=title)
    turns = {**state.turns, env.turn: TurnState(turn_id=env.turn, user_text=e.text)}
    return replace(state, title=title, turns=turns, order=(*state.order, env.turn))


def _turn_started(state: SessionState, turn: TurnState, e: TurnStarted) -> SessionState:
    if turn.status in TERMINAL:
        return replace(state, anomalies=(*state.anomalies, f"turn {turn.turn_id} restarted"))
    fresh = TurnState(
        turn_id=turn.turn_id,
        user_text=turn.user_text,
        status="running",
        attempt=e.attempt,
        provider=e.provider,
        model=e.model,
        cancel_requested=turn.cancel_requested,
        fallbacks=turn.fallbacks,
    )
    state = _put(state, fresh)
    if turn.turn_id not in state.order:
        state = replace(state, order=(*state.order, turn.turn_id))
    return state


def _in_turn(state: SessionState, turn: TurnState, env: Envelope) -> SessionState:
    e = env.event
    if isinstance(e, TextDelta):
        return _put(state, replace(turn, partial_text=turn.partial_text + e.text))
    if isinstance(e, ReasoningDelta):
        return _put(state, replace(turn, partial_reasoning=turn.partial_reasoning + e.text))
    if isinstance(e, ToolCall):
        call = ToolCallRef(call_id=e.call_id, tool=e.tool, arguments=e.arguments)
        return _put(state, replace(turn, step_calls=(*turn.step_calls, call)))
    if isinstance(e, AssistantMessage):
        return _put(state, _close_step(turn, e))
    if isinstance(e, ToolResult):
        result = ToolTurn(call_id=e.call_id, tool=e.tool, content=e.content, is_error=e.is_error)
        return _put(state, replace(turn, staged=(*turn.staged, result)))
    if isinstance(e, Fallback):
        disabled = turn.tools_disabled or e.fallback == "tools_disabled"
        return _put(state, replace(turn, fallbacks=(*turn.fallbacks, e), tools_disabled=disabled))
    asked = UserTurn(text=turn.user_text)
    if isinstance(e, TurnCompleted):
        done = replace(turn, status="completed", staged=())
        return replace(_put(state, done), messages=(*state.messages, asked, *turn.staged))
    if isinstance(e, TurnFailed):
        failed = replace(turn, status="failed", error=e.message, staged=())
        return replace(_put(state, failed), messages=(*state.messages, asked))
    if isinstance(e, TurnCancelled):
        kept = _answered_steps(turn.staged)
        if e.partial_text:
            kept = (*kept, AssistantTurn(text=e.partial_text))
        done = replace(turn, status="cancelled", staged=())
        return replace(_put(state, done), messages=(*state.messages, asked, *kept))
    return state


def _close_step(turn: TurnState, e: AssistantMessage) -> TurnState:
    calls = e.tool_calls or turn.step_calls
    message = AssistantTurn(
        text=e.text,
        reasoning=e.reasoning,
        tool_calls=calls,
        provider_data=e.provider_data,
    )
    return replace(
        turn,
        staged=(*turn.staged, message),
        step_calls=(),
        partial_text="",
        partial_reasoning="",
    )


def _answered_steps(staged: tuple[Message, ...]) -> tuple[Message, ...]:
    """The staged steps up to the last one whose tool calls all have results."""
    kept: list[Message] = []
    pending: list[Message] = []
    open_calls: set[str] = set()
    for message in staged:
        pending.append(message)
        if isinstance(message, AssistantTurn):
            open_calls |= {c.call_id for c in message.tool_calls}
        elif isinstance(message, ToolTurn):
            open_calls.discard(message.call_id)
        if not open_calls:
            kept.extend(pending)
            pending.clear()
    return tuple(kept)


def _put(state: SessionState, turn: TurnState) -> SessionState:
    return replace(state, turns={**state.turns, turn.turn_id: turn})
