"""The session model: a session's state as the fold of its events. No I/O.

:class:`SessionState` is the one definition of a session: its settings, each turn's
status, attempt, provider and model, fallbacks, error and ending, the conversation as a
model must see it, and the transcript every reader shows (user messages, assistant
steps, tool results, a cancelled turn's partial text, each with its place in the log).
The agent continues a session from it, the gateway renders its history from it, the
timeline and fork ask it which events count.

What an event does to its turn is decided by :func:`threadline.events.turns.transition`
(the turn rules, in one place). Applying one event costs O(size of that event): the
state is a mutable aggregate, advanced in place by :meth:`SessionState.apply`;
:meth:`SessionState.copy` gives an independent snapshot. See docs/events.md.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TypeVar, assert_never

import msgspec

from threadline.base.config import DoubleTexting
from threadline.events import schema as ev
from threadline.events.conversation import (
    AssistantTurn,
    Message,
    ToolTurn,
    UserTurn,
    answered_steps,
)
from threadline.events.store import Quarantined, Recorded
from threadline.events.turns import TERMINAL, Phase, TurnStatus, title_from, transition, turn_of

Said = ev.UserMessage | ev.AssistantMessage | ev.ToolResult | ev.TurnCancelled
Ending = ev.TurnCompleted | ev.TurnFailed | ev.TurnCancelled
S = TypeVar("S", "TurnState", "SessionState")
Work = (
    ev.TextDelta | ev.ReasoningDelta | ev.ToolCall | ev.AssistantMessage | ev.ToolResult
    | ev.Fallback | ev.ApprovalRequested | ev.ApprovalGranted | ev.ApprovalDenied
)  # fmt: skip
#: the events commands store with their request's idempotency key
Request = ev.SessionStarted | ev.SessionRenamed | ev.UserMessage | ev.CancelRequested


class Entry(NamedTuple):
    """One message of the transcript: where it sits in the log, the event that said it,
    and the message as a model sees it."""

    turn: str | None
    version: int
    position: int
    at: int
    event: Said
    message: Message


Decision = ev.ApprovalGranted | ev.ApprovalDenied


class Approval(NamedTuple):
    """A tool call waiting for a person (``request``), and the decision that counts once
    there is one: the first (a person's, or the deadline's), who made it, and where."""

    request: ev.ApprovalRequested
    decision: Decision | None = None
    actor: str = ""
    position: int = 0

    @property
    def granted(self) -> bool:
        return isinstance(self.decision, ev.ApprovalGranted)


class Span(NamedTuple):
    """The part of the conversation one ended turn (or a user message outside any turn)
    added: from ``messages[start]`` up to the next span's start. What a context cut
    leaves out is always the oldest spans, whole (:class:`ContextTrimmed`)."""

    start: int
    turn: str | None
    #: the version that added it: the turn's terminal event, or the loose message
    version: int


def message_of(e: ev.AssistantMessage | ev.ToolResult) -> Message:
    """What a model sees of a step or of a tool result (the fold's and the agent's)."""
    if isinstance(e, ev.ToolResult):
        return ToolTurn(call_id=e.call_id, tool=e.tool, content=e.content, is_error=e.is_error)
    return AssistantTurn(
        text=e.text, reasoning=e.reasoning, tool_calls=e.tool_calls, provider_data=e.provider_data
    )


def _entry(rec: Recorded, event: Said, message: Message) -> Entry:
    return Entry(rec.turn, rec.version, rec.position, rec.envelope.at, event, message)


def _copied(state: S) -> S:
    """A copy of ``state`` with copies of its lists and dicts (their items are shared)."""
    twin = copy.copy(state)
    for f in dataclasses.fields(state):
        if isinstance(value := getattr(state, f.name), list | dict):
            setattr(twin, f.name, copy.copy(value))
    return twin


@dataclass(slots=True, kw_only=True)
class TurnState:
    """One turn: its phase, the attempt that counts and that attempt's work."""

    turn_id: str
    #: the user message that opened the turn (None: a turn started without one)
    user: Entry | None = None
    status: TurnStatus = "pending"
    attempt: int = 0
    provider: str = ""
    model: str = ""
    cancel_requested: bool = False
    #: position of the latest stop request for the turn (0: none)
    cancel_position: int = 0
    #: a stop request asked to roll the turn back: if it ends cancelled, it adds nothing
    #: to the model's context (:meth:`_end`)
    rollback: bool = False
    #: version of the counting attempt's ``turn_started`` (0: none yet)
    started: int = 0
    #: the counting attempt's finished steps and tool results (and, for a cancelled
    #: turn, its partial text), in log order
    steps: list[Entry] = field(default_factory=list)
    calls: list[ev.ToolCallRef] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    #: the counting attempt's fallbacks (a superseded attempt's are dropped)
    fallbacks: list[ev.Fallback] = field(default_factory=list)
    #: the terminal event that ended the turn, and its version
    ending: Ending | None = None
    ended: int = 0
    #: the context cut the counting attempt was sent with (None: the whole conversation)
    context: ev.ContextTrimmed | None = None
    #: the counting attempt's calls that needed a person's approval, by call id
    approvals: dict[str, Approval] = field(default_factory=dict)

    @property
    def phase(self) -> Phase:
        return Phase(self.status, self.attempt)

    @property
    def asked(self) -> Message:
        """The turn's question as a model sees it (empty: a turn started without one)."""
        return self.user.message if self.user is not None else UserTurn(text="")

    @property
    def partial_text(self) -> str:
        """Text streamed by the current step (of a running turn: not yet a step)."""
        return "".join(self.text)

    @property
    def staged(self) -> tuple[Message, ...]:
        """The counting attempt's finished steps and tool results, as messages."""
        return tuple(entry.message for entry in self.steps)

    @property
    def awaiting(self) -> tuple[str, ...]:
        """The calls waiting for a decision: while there are any, the turn waits without
        a worker (the decision brings it back: docs/human-in-the-loop.md)."""
        return tuple(c for c, a in self.approvals.items() if a.decision is None)

    @property
    def unanswered(self) -> tuple[int, tuple[ev.ToolCallRef, ...]]:
        """The last finished step and its calls that have no result yet."""
        step, answered = 0, set[str]()
        calls: tuple[ev.ToolCallRef, ...] = ()
        for entry in self.steps:
            if isinstance(entry.event, ev.AssistantMessage) and isinstance(
                entry.message, AssistantTurn
            ):
                step, calls, answered = entry.event.step, entry.message.tool_calls, set()
            elif isinstance(entry.event, ev.ToolResult):
                answered.add(entry.event.call_id)
        return step, tuple(c for c in calls if c.call_id not in answered)

    @property
    def last_decision(self) -> int:
        """The position of the latest decision on the attempt's calls (0: none)."""
        return max((a.position for a in self.approvals.values()), default=0)

    @property
    def resumable(self) -> bool:
        """Whether the attempt that counts stopped to wait for approvals that are all
        decided now: it carries on (the same attempt) from the calls they held back."""
        if self.status != "running" or not self.approvals or self.awaiting:
            return False
        _, calls = self.unanswered
        return any(c.call_id in self.approvals for c in calls)

    @property
    def error(self) -> str:
        return self.ending.message if isinstance(self.ending, ev.TurnFailed) else ""

    @property
    def completed(self) -> ev.TurnCompleted | None:
        return self.ending if isinstance(self.ending, ev.TurnCompleted) else None

    def _start(self, rec: Recorded, e: ev.TurnStarted) -> None:
        """A new attempt: the previous attempt's work is dropped."""
        self.provider, self.model, self.started = e.provider, e.model, rec.version
        self.steps, self.calls, self.text, self.reasoning = [], [], [], []
        self.fallbacks, self.approvals = [], {}

    def _work(self, rec: Recorded, e: Work) -> None:
        """An event of the counting attempt's work."""
        match e:
            case ev.TextDelta():
                self.text.append(e.text)
            case ev.ReasoningDelta():
                self.reasoning.append(e.text)
            case ev.ToolCall():
                self.calls.append(
                    ev.ToolCallRef(call_id=e.call_id, tool=e.tool, arguments=e.arguments)
                )
            case ev.AssistantMessage():
                self._close_step(rec, e)
            case ev.ToolResult():
                self.steps.append(_entry(rec, e, message_of(e)))
            case ev.Fallback():
                self.fallbacks.append(e)
            case ev.ApprovalRequested() | ev.ApprovalGranted() | ev.ApprovalDenied():
                self._approval(rec, e)
            case _:
                assert_never(e)

    def _approval(
        self, rec: Recorded, e: ev.ApprovalRequested | ev.ApprovalGranted | ev.ApprovalDenied
    ) -> None:
        """A call of the counting attempt waits for approval, or is decided: the first
        decision counts (a later one, or one for a call not asked about, is ignored)."""
        if isinstance(e, ev.ApprovalRequested):
            self.approvals[e.call_id] = Approval(e)
        elif (asked := self.approvals.get(e.call_id)) is not None and asked.decision is None:
            self.approvals[e.call_id] = asked._replace(
                decision=e, actor=rec.envelope.actor, position=rec.position
            )

    def _close_step(self, rec: Recorded, e: ev.AssistantMessage) -> None:
        if (not e.text and self.text) or (not e.reasoning and self.reasoning):
            # a step too large to repeat in one event keeps its text in its deltas only
            text, reasoning = e.text or self.partial_text, e.reasoning or "".join(self.reasoning)
            e = msgspec.structs.replace(e, text=text, reasoning=reasoning)
        message = message_of(e)
        if not e.tool_calls and self.calls:  # the calls named by their own events only
            message = msgspec.structs.replace(message, tool_calls=tuple(self.calls))
        self.steps.append(_entry(rec, e, message))
        self.calls, self.text, self.reasoning = [], [], []

    def _end(self, rec: Recorded, e: Ending) -> list[Message]:
        """End the turn; what it adds to the conversation (the model's context).

        The one rule for what a model sees of an ended turn: a completed turn adds its
        question and its steps; a cancelled one its question, its answered steps and its
        partial text; a failed one nothing: its question stays in the transcript, but a
        later turn is not sent it (nor its steps) unless it is retried, as a new turn
        (a question that always fails must not make the session unusable). A cancelled
        turn that was rolled back (a stop request with ``rollback``: the double-texting
        policy) adds nothing either: it stays in the transcript, its partial text too."""
        if isinstance(e, ev.TurnCancelled) and not e.partial_text and self.text:
            e = msgspec.structs.replace(e, partial_text=self.partial_text)  # too large, as above
        self.ending, self.ended = e, rec.version
        asked = self.asked
        match e:
            case ev.TurnCompleted():
                return [asked, *self.staged]
            case ev.TurnFailed():
                return []
            case ev.TurnCancelled():
                kept = answered_steps(self.staged)
                if e.partial_text:
                    partial = AssistantTurn(text=e.partial_text)
                    self.steps.append(_entry(rec, e, partial))
                    kept = (*kept, partial)
                return [] if self.rollback else [asked, *kept]
            case _:
                assert_never(e)


@dataclass(slots=True, kw_only=True)
class SessionState:
    """A session's state; advance it with :meth:`apply` (or :func:`fold`)."""

    session: str
    owner: str = ""
    #: the title shown: the one set (``named``), else the first message's first line
    title: str = ""
    #: the title set by ``session_started`` or the latest ``session_renamed`` ("": none)
    named: str = ""
    provider: str = ""
    model: str = ""
    system_prompt: str = ""
    tool_servers: tuple[str, ...] = ()
    params: ev.GenerationParams = field(default_factory=ev.GenerationParams)
    forked_from: ev.ForkOrigin | None = None
    #: what a message sent while a turn is open does (None: the deployment's default)
    double_texting: DoubleTexting | None = None
    #: ``always``: every tool call of the session waits for a person's approval
    approval: Literal["always"] | None = None
    started: bool = False
    version: int = 0
    position: int = 0
    #: ``at`` of the first and of the latest event folded
    created_at: int = 0
    updated_at: int = 0
    #: every turn, in the order they were opened
    turns: dict[str, TurnState] = field(default_factory=dict)
    #: the conversation of the turns that have ended
    committed: list[Message] = field(default_factory=list)
    #: where each ended turn's part of ``committed`` starts, in order
    spans: list[Span] = field(default_factory=list)
    #: the latest context cut, in effect for the turns that follow (None: none yet)
    context: ev.ContextTrimmed | None = None
    #: user messages outside any turn
    loose: list[Entry] = field(default_factory=list)
    #: turns not yet ended, in order
    open_turns: dict[str, None] = field(default_factory=dict)
    #: the idempotency key of each request a command stored (a session start, a user
    #: message, a stop request) and its position: a retry finds its record here, however
    #: long after the store's duplicate window
    requests: dict[str, int] = field(default_factory=dict)
    #: events kept out of the state: a second terminal event, a restarted turn
    anomalies: list[str] = field(default_factory=list)
    #: the records stepped over, unreadable (:class:`Quarantined`): position -> why
    quarantined: dict[int, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ reading

    @property
    def in_flight(self) -> str | None:
        """The turn currently running, if any."""
        return next((t for t in self.open_turns if self.turns[t].status == "running"), None)

    @property
    def pending(self) -> tuple[str, ...]:
        """Turns with a user message that no attempt has started yet, oldest first."""
        return tuple(t for t in self.open_turns if self.turns[t].status == "pending")

    def status(self, turn_id: str) -> TurnStatus | None:
        turn = self.turns.get(turn_id)
        return turn.status if turn else None

    def is_terminal(self, turn_id: str) -> bool:
        return self.status(turn_id) in TERMINAL

    def turn_messages(self, turn_id: str) -> tuple[Message, ...]:
        """The turn's own part of what a model answering it sees, after the committed
        conversation: its user message and the steps its current attempt has finished
        (what a context cut keeps)."""
        turn = self.turns[turn_id]
        return (turn.asked, *turn.staged)

    def transcript(self) -> list[Entry]:
        """Every message in log order: user messages, and each turn's counting attempt's
        steps, tool results and (cancelled) partial text."""
        turns = (([t.user] if t.user is not None else []) + t.steps for t in self.turns.values())
        return sorted(itertools.chain(self.loose, *turns), key=lambda e: e.version)

    def superseded(self, rec: Recorded) -> bool:
        """Whether ``rec`` was written by an attempt that a later attempt replaced."""
        turn = self.turns.get(turn_of(rec.envelope) or "")
        return turn is not None and turn.phase.supersedes(rec.attempt)

    def settled(self, rec: Recorded) -> bool:
        """Whether ``rec`` is part of what its ended turn settled on: the attempt that
        counted, up to and including its terminal event."""
        turn = self.turns.get(turn_of(rec.envelope) or "")
        return (
            turn is not None
            and turn.ending is not None
            and turn.phase.counts(rec.attempt)
            and rec.version <= turn.ended
        )

    def copy(self) -> SessionState:
        """An independent snapshot (applying events to one leaves the other as it was).
        Ended turns are shared, not copied: the fold never changes one in place (see
        :meth:`_turn`), so a copy costs O(open turns) plus a few pointer copies."""
        state = _copied(self)
        for t in self.open_turns:
            state.turns[t] = _copied(state.turns[t])
        return state

    # ------------------------------------------------------------------ applying

    def apply(self, rec: Recorded) -> None:
        """Advance the state by one event (the session's next, in version order)."""
        env, event = rec.envelope, rec.envelope.event
        self._advance(rec)
        match event:
            case ev.SessionStarted():
                self._session_started(event)
            case ev.SessionRenamed():
                self.title = self.named = event.title
            case ev.UserMessage():
                self._user_message(rec, event)
            case ev.CancelRequested():
                if turn := self._turn(rec, event, env.turn or self.in_flight):
                    turn.cancel_requested, turn.cancel_position = True, rec.position
                    turn.rollback = turn.rollback or event.rollback
            case (
                ev.TextDelta() | ev.ReasoningDelta() | ev.ToolCall() | ev.AssistantMessage()
                | ev.ToolResult() | ev.Fallback() | ev.ApprovalRequested() | ev.ApprovalGranted()
                | ev.ApprovalDenied()
            ):  # fmt: skip
                if turn := self._turn(rec, event):
                    turn._work(rec, event)
            case ev.ContextTrimmed():
                if turn := self._turn(rec, event):
                    turn.context = self.context = event
            case (
                ev.TurnStarted() | ev.ToolProgress() | ev.TurnCompleted() | ev.TurnFailed()
                | ev.TurnCancelled()
            ):  # fmt: skip
                self._turn(rec, event)  # progress: shown, no part of the model
            case _:
                assert_never(event)

    def _advance(self, rec: Recorded) -> None:
        """Where the state is: version, position, times, the keys of requests."""
        env = rec.envelope
        if self.version == 0:
            self.created_at = env.at
        self.version, self.updated_at = env.version, env.at
        self.position = rec.position or self.position
        if isinstance(env.event, Request):  # a command's: a retry of it finds it here
            self.requests[env.key] = rec.position

    def skip(self, q: Quarantined) -> None:
        """Step over a record no reader can use, keeping its place and why."""
        self.version, self.position = q.version or self.version, q.position
        self.quarantined[q.position] = q.reason

    def _session_started(self, e: ev.SessionStarted) -> None:
        self.started, self.owner, self.title, self.named = True, e.owner, e.title, e.title
        self.provider, self.model, self.system_prompt = e.provider, e.model, e.system_prompt
        self.tool_servers, self.params, self.forked_from = e.tool_servers, e.params, e.forked_from
        self.double_texting, self.approval = e.double_texting, e.approval

    def _user_message(self, rec: Recorded, e: ev.UserMessage) -> None:
        """A user message opens its turn; it joins the conversation when the turn ends
        (turns run in order), so a turn does not see messages sent while it runs."""
        self.title = self.title or title_from(e.text)
        entry = _entry(rec, e, UserTurn(text=e.text))
        if rec.turn is None:
            self.loose.append(entry)
            self.spans.append(Span(len(self.committed), None, rec.version))
            self.committed.append(entry.message)
        elif self._turn(rec, e) is not None:
            self.turns[rec.turn].user = entry

    def _turn(self, rec: Recorded, event: ev.Event, turn_id: str | None = None) -> TurnState | None:
        """Judge ``event`` for its turn (:func:`transition`) and carry out what it does to
        the turn's phase; the turn when the event is the turn's to apply, else None."""
        turn_id = turn_id or turn_of(rec.envelope)
        if turn_id is None:
            return None
        turn = self.turns.get(turn_id)
        verdict, phase = transition(turn.phase if turn else None, event, rec.attempt)
        if verdict == "anomaly":
            anomaly = f"second terminal event for turn {turn_id}"
            if isinstance(event, ev.TurnStarted):
                anomaly = f"turn {turn_id} restarted"
            self.anomalies.append(anomaly)
        if verdict in ("ignored", "anomaly") or phase is None:
            return None
        if turn is None:
            turn = self.turns[turn_id] = TurnState(turn_id=turn_id)
            self.open_turns[turn_id] = None
        elif turn.ending is not None:  # shared by copies: changed on a copy of its own
            turn = self.turns[turn_id] = _copied(turn)
        turn.status, turn.attempt = phase
        if verdict == "starts":
            assert isinstance(event, ev.TurnStarted)
            turn._start(rec, event)
            turn.context = self.context
        elif verdict == "ends":
            assert isinstance(event, ev.TurnCompleted | ev.TurnFailed | ev.TurnCancelled)
            self.spans.append(Span(len(self.committed), turn_id, rec.version))
            self.committed += turn._end(rec, event)
            self.open_turns.pop(turn_id, None)
        return turn


def fold(
    records: Iterable[Recorded | Quarantined], state: SessionState | None = None
) -> SessionState:
    """Fold records (in version order) onto ``state``, in place, or onto a fresh state,
    stepping over quarantined ones. Pass ``state.copy()`` to keep ``state`` as it was."""
    for rec in records:
        if state is None:
            state = SessionState(session=rec.session)
        if isinstance(rec, Quarantined):
            state.skip(rec)
        else:
            state.apply(rec)
    if state is None:
        raise ValueError("fold needs at least one record or an initial state")
    return state
