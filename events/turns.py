"""The turn rules, in one place: what one event does to its turn.

A turn is opened by its user message, run by attempts (each begins with a
``turn_started`` carrying a higher attempt number) and ended by exactly one terminal
event. :func:`transition` says, for a turn's :class:`Phase` (its status and the attempt
that counts) and one more event, what that event does (:data:`Verdict`) and the phase
after it. It is pure and looks only backwards, so every reader applies it as events
arrive: the session fold (:mod:`threadline.events.fold`), the projections' SQL views
(which keep a turn's phase in a row), the AI SDK stream, and, through the fold, the
gateway's history, the timeline and fork. See docs/events.md, "The session model".
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple, assert_never

from threadline.events import schema as ev

TurnStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
TERMINAL: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})

#: What an event does to its turn.
#: ``opens``: a user message creates the turn (pending); ``starts``: a new attempt
#: begins and supersedes the one before (its work is dropped); ``applies``: the event
#: belongs to the attempt that counts (a delta, tool call or result, fallback, step,
#: context cut) or is a stop request; ``ends``: the turn's terminal event; ``ignored``:
#: not part of the turn's state (an event of a superseded attempt, of an unknown turn, a
#: late event of an ended turn, a second user message for a turn); ``anomaly``: a
#: terminal event or a new attempt for a turn that has already ended (kept out of the
#: state, reported).
Verdict = Literal["opens", "starts", "applies", "ends", "ignored", "anomaly"]


class Phase(NamedTuple):
    """Where a turn is: its status and the attempt that counts (0: none started yet)."""

    status: TurnStatus = "pending"
    attempt: int = 0

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    def counts(self, attempt: int | None) -> bool:
        """Whether an event of ``attempt`` belongs to the attempt that counts (an event
        without an attempt belongs to whichever attempt counts)."""
        return attempt is None or attempt == self.attempt

    def supersedes(self, attempt: int | None) -> bool:
        """Whether ``attempt`` is an earlier attempt, replaced by the one that counts."""
        return attempt is not None and 0 < attempt < self.attempt


def judge(phase: Phase | None, event: ev.Event, attempt: int | None) -> Verdict:
    """What ``event`` (of ``attempt``, from its envelope) does to a turn in ``phase``
    (None: a turn no event has opened yet)."""
    match event:
        case ev.SessionStarted() | ev.SessionRenamed():
            return "ignored"
        case ev.UserMessage():
            return "opens" if phase is None else "ignored"
        case ev.CancelRequested():
            return "ignored" if phase is None else "applies"
        case ev.ApprovalGranted() | ev.ApprovalDenied():  # a person's (or the deadline's) decision
            return "applies" if phase is not None and not phase.ended else "ignored"
        case ev.TurnStarted():
            if phase is None:
                return "starts"
            if phase.ended:
                return "anomaly"
            return "starts" if event.attempt > phase.attempt else "ignored"
        case (
            ev.TextDelta() | ev.ReasoningDelta() | ev.ToolCall() | ev.ToolResult()
            | ev.ToolProgress() | ev.Fallback() | ev.AssistantMessage() | ev.ContextTrimmed()
            | ev.ApprovalRequested()
        ):  # fmt: skip
            ours = phase is not None and not phase.ended and phase.counts(attempt)
            return "applies" if ours else "ignored"
        case ev.TurnCompleted() | ev.TurnFailed() | ev.TurnCancelled():
            if phase is None:
                return "ignored"
            if phase.ended:
                return "anomaly"
            return "ends" if phase.counts(attempt) else "ignored"
        case _:
            assert_never(event)


def transition(
    phase: Phase | None, event: ev.Event, attempt: int | None
) -> tuple[Verdict, Phase | None]:
    """:func:`judge`, and the turn's phase after the event (None: the turn is still
    unknown)."""
    verdict = judge(phase, event, attempt)
    if verdict == "opens":
        return verdict, Phase()
    if verdict == "starts":
        assert isinstance(event, ev.TurnStarted)
        return verdict, Phase("running", event.attempt)
    if verdict == "ends":
        assert phase is not None
        return verdict, Phase(ended_status(event), phase.attempt)
    return verdict, phase


_ENDED: Final[dict[type[ev.Event], TurnStatus]] = {
    ev.TurnCompleted: "completed", ev.TurnFailed: "failed", ev.TurnCancelled: "cancelled",
}  # fmt: skip


def ended_status(event: ev.Event) -> TurnStatus:
    """The status a terminal event gives its turn (``KeyError``: not a terminal event)."""
    return _ENDED[type(event)]


def turn_of(env: ev.Envelope) -> str | None:
    """The turn an event is about (a ``turn_started`` names it in its payload too; a
    ``cancel_requested`` without one is about the running turn, which only a reader
    holding the whole session knows)."""
    event = env.event
    return env.turn or (event.turn_id if isinstance(event, ev.TurnStarted) else None)


def title_from(text: str) -> str:
    """A session's title when none was set: the first line of its first user message."""
    stripped = text.strip()
    return stripped.splitlines()[0][:80] if stripped else ""
