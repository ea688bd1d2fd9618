"""Our events -> UI message stream chunks, for one turn (one assistant message).

:class:`TurnChunks` is pure: feed it the envelopes of one turn in log order and it
answers the chunks to send. The message id is the turn id, so a replay of the same turn
(``GET /api/chat/{id}/stream``) updates the same message on the client.

* Steps: ``start-step`` when a model step's first event arrives, ``finish-step`` when
  the next step begins or the turn ends (a step's tool results come after its
  ``assistant_message``, and the AI SDK keeps them inside the step).
* Text and reasoning become ``text-*`` / ``reasoning-*`` parts; switching between them,
  a tool call or the end of the step closes the open part. If a step's
  ``assistant_message`` carries more text than its deltas did, the rest is sent too.
* Tool calls become ``dynamic-tool`` parts (the client does not declare our MCP tools):
  ``tool-input-start`` + ``tool-input-available``, then ``tool-output-available`` or
  ``tool-output-error`` with the result's content (a string).
* Approvals: ``approval_requested`` -> ``tool-approval-request`` (``approvalId`` = the
  call id); ``approval_denied`` -> ``tool-output-denied`` (the call's ``tool_result``,
  the denial as the model reads it, is then not shown); ``approval_granted``: nothing
  (the output follows). :meth:`TurnChunks.paused` says when the attempt stopped to
  wait, by the session model's account of the turn (the stream then ends with
  :meth:`TurnChunks.pause`).
* ``fallback`` becomes a ``data-fallback`` part ``{kind, reason, from, to, attempt}``.
* Which events count is the session model's rule (:func:`~threadline.events.turns.transition`
  on the turn's phase): a new attempt (a later ``turn_started``) supersedes the earlier
  one and events of older attempts are dropped. If the superseded attempt had already
  shown text, reasoning or tools, its open parts are closed and a ``data-restart`` part
  ``{attempt, superseded}`` marks where the new attempt begins (parts cannot be
  retracted in this protocol); otherwise the new attempt simply carries on. A replay
  starts at the counting attempt (:func:`replay_start`, from the fold).
* ``turn_completed`` -> ``finish`` (the last step's finish reason); ``turn_failed`` ->
  ``error`` then ``finish`` (``error``); ``turn_cancelled`` -> ``abort`` then ``finish``
  (``other``). Then the stream ends with ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, assert_never

from threadline.events import schema as ev
from threadline.events.fold import SessionState, TurnState, fold
from threadline.events.schema import Envelope, FinishReason
from threadline.events.store import Recorded
from threadline.events.turns import transition
from threadline.services.gateway.aisdk import protocol as p
from threadline.services.gateway.history import view_of

_FINISH: Final[dict[FinishReason, p.UIFinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
    "error": "error",
    "cancelled": "other",
}
PartKind = Literal["text", "reasoning"]
#: the start, delta and end chunks of a text or reasoning part
_PARTS: Final[dict[PartKind, tuple[type[p.Part], type[p.Delta], type[p.Part]]]] = {
    "text": (p.TextStart, p.TextDelta, p.TextEnd),
    "reasoning": (p.ReasoningStart, p.ReasoningDelta, p.ReasoningEnd),
}


class TurnChunks:
    """The chunks of one turn's assistant message, event by event."""

    def __init__(self, turn: str) -> None:
        self.turn = turn
        #: the session model of the events fed (None: none yet)
        self.state: SessionState | None = None
        self.step: int | None = None
        #: the open text or reasoning part (at most one): its kind and id
        self.open: dict[PartKind, str] = {}
        self.parts = 0
        #: whether the current attempt showed text, reasoning or tools
        self.shown = False
        #: tool calls of the current attempt shown so far
        self.calls: set[str] = set()
        #: text and reasoning streamed in the current step
        self.streamed: dict[PartKind, str] = dict.fromkeys(_PARTS, "")
        self.finish_reason: p.UIFinishReason = "stop"

    @property
    def _turn(self) -> TurnState | None:
        return self.state.turns.get(self.turn) if self.state is not None else None

    @property
    def attempt(self) -> int:
        """The attempt being shown (0: none started yet)."""
        return self._turn.attempt if self._turn is not None else 0

    @property
    def done(self) -> bool:
        return self._turn is not None and self._turn.phase.ended

    def paused(self) -> bool:
        """Whether the attempt stopped to wait for approvals: calls wait for a decision
        (``awaiting``) and the step's other calls have their results (the agent asks last)."""
        turn = self._turn
        return (
            turn is not None
            and bool(turn.awaiting)
            and set(turn.awaiting) >= {call.call_id for call in turn.unanswered[1]}
        )

    def pause(self) -> list[p.Chunk]:
        """The end of this response while the turn waits: the client answers with
        ``addToolApprovalResponse`` and a new request continues the same message."""
        return [*self._close_parts(), p.FinishStep(), p.Finish(finish_reason="tool-calls")]

    def start(self) -> list[p.Chunk]:
        return [p.Start(message_id=self.turn)]

    def feed(self, env: Envelope) -> list[p.Chunk]:
        """The chunks for one more event (none for other turns, stale attempts, the end)."""
        if env.turn != self.turn:
            return []
        before = self._turn.phase if self._turn is not None else None
        verdict, _ = transition(before, env.event, env.attempt)
        self.state = fold((Recorded(0, env, "", b""),), self.state)
        if verdict == "starts":
            return self._new_attempt(before.attempt if before else 0)
        if verdict in ("applies", "ends"):
            return self._chunks(env.event)
        return []  # opened, a superseded attempt's straggler, after the end

    def _chunks(self, e: ev.Event) -> list[p.Chunk]:
        match e:
            case ev.TextDelta() | ev.ReasoningDelta():
                kind: PartKind = "text" if isinstance(e, ev.TextDelta) else "reasoning"
                return self._open_step(e.step) + (self._delta(kind, e.text) if e.text else [])
            case ev.ToolCall():
                return self._open_step(e.step) + self._call_chunks(e.call_id, e.tool, e.arguments)
            case ev.ToolResult():
                return self._tool_result(e)
            case ev.ToolProgress():
                data = view_of(p.ToolProgressData, e)
                return [p.DataToolProgress(id=f"progress-{e.call_id}", data=data)]
            case ev.AssistantMessage():
                return self._assistant_message(e)
            case ev.Fallback():
                fallback = view_of(p.FallbackData, e, kind=e.fallback)
                return [*self._close_parts(), p.DataFallback(data=fallback)]
            case ev.TurnCompleted():
                return self._end(p.Finish(finish_reason=self.finish_reason))
            case ev.TurnFailed():
                text = f"{e.message} ({e.error})" if e.message else e.error
                return self._end(p.Error(error_text=text), p.Finish(finish_reason="error"))
            case ev.TurnCancelled():
                return self._end(p.Abort(reason=e.reason or None), p.Finish(finish_reason="other"))
            case ev.ApprovalRequested() | ev.ApprovalGranted() | ev.ApprovalDenied():
                return self._approval(e)
            case (
                ev.SessionStarted() | ev.SessionRenamed() | ev.UserMessage()
                | ev.CancelRequested() | ev.TurnStarted() | ev.ContextTrimmed()
            ):  # fmt: skip
                return []  # a context cut is the model's input, not the answer
            case _:
                assert_never(e)

    # ------------------------------------------------------------------ attempts

    def _new_attempt(self, superseded: int) -> list[p.Chunk]:
        out = self._close_step()
        if superseded and self.shown:
            data = p.RestartData(attempt=self.attempt, superseded=superseded)
            out.append(p.DataRestart(id=f"restart-{self.attempt}", data=data))
        self.shown = False
        self.calls = set()
        return out

    # ------------------------------------------------------------------ parts

    def _open_step(self, step: int) -> list[p.Chunk]:
        if self.step == step:
            return []
        out = self._close_step()
        self.step = step
        self.streamed = dict.fromkeys(_PARTS, "")
        out.append(p.StartStep())
        return out

    def _close_parts(self) -> list[p.Chunk]:
        out: list[p.Chunk] = [_PARTS[kind][2](id=part) for kind, part in self.open.items()]
        self.open = {}
        return out

    def _close_step(self) -> list[p.Chunk]:
        if self.step is None:
            return []
        out = self._close_parts()
        out.append(p.FinishStep())
        self.step = None
        return out

    def _delta(self, kind: PartKind, text: str) -> list[p.Chunk]:
        out: list[p.Chunk] = []
        if kind not in self.open:
            out += self._close_parts()
            self.parts += 1
            self.open[kind] = f"{kind}-{self.attempt}-{self.step}-{self.parts}"
            out.append(_PARTS[kind][0](id=self.open[kind]))
        part = self.open[kind]
        out.append(_PARTS[kind][1](id=part, delta=text))
        self.streamed[kind] += text
        self.shown = True
        return out

    # ------------------------------------------------------------------ tools

    def _call_chunks(self, call_id: str, tool: str, arguments: Any) -> list[p.Chunk]:
        """A tool call's part, unless it was shown already."""
        if call_id in self.calls:
            return []
        self.calls.add(call_id)
        self.shown = True
        return [
            *self._close_parts(),
            p.ToolInputStart(tool_call_id=call_id, tool_name=tool, dynamic=True),
            p.ToolInputAvailable(
                tool_call_id=call_id, tool_name=tool, input=arguments, dynamic=True
            ),
        ]

    def _tool_result(self, event: ev.ToolResult) -> list[p.Chunk]:
        # never without its call, but keep the client sane
        out = self._open_step(event.step) + self._call_chunks(event.call_id, event.tool, {})
        call = event.call_id
        approval = self._turn.approvals.get(call) if self._turn is not None else None
        if approval is not None and isinstance(approval.decision, ev.ApprovalDenied):
            return out  # shown as denied already; the model gets the denial text
        if event.is_error:
            text = event.content or event.summary or "the tool failed"
            return [*out, p.ToolOutputError(tool_call_id=call, error_text=text, dynamic=True)]
        return [*out, p.ToolOutputAvailable(tool_call_id=call, output=event.content, dynamic=True)]

    # ------------------------------------------------------------------ steps and ends

    def _assistant_message(self, event: ev.AssistantMessage) -> list[p.Chunk]:
        out = self._open_step(event.step)
        parts: tuple[tuple[PartKind, str], ...] = (
            ("reasoning", event.reasoning),
            ("text", event.text),
        )
        for kind, full in parts:
            if missing := _rest(full, self.streamed[kind]):
                out += self._delta(kind, missing)
        for call in event.tool_calls:
            out += self._call_chunks(call.call_id, call.tool, call.arguments)
        self.finish_reason = _FINISH.get(event.finish_reason, "other")
        return out + self._close_parts()

    def _approval(
        self, event: ev.ApprovalRequested | ev.ApprovalGranted | ev.ApprovalDenied
    ) -> list[p.Chunk]:
        if isinstance(event, ev.ApprovalRequested):  # approvalId: our call id
            return [p.ToolApprovalRequest(approval_id=event.call_id, tool_call_id=event.call_id)]
        approval = self._turn.approvals.get(event.call_id) if self._turn is not None else None
        if approval is None or approval.decision is not event or approval.granted:
            return []  # granted: the result follows; else a decision the fold ignored
        return [p.ToolOutputDenied(tool_call_id=event.call_id)]

    def _end(self, *chunks: p.Chunk) -> list[p.Chunk]:
        return [*self._close_step(), *chunks]


def replay_start(records: Sequence[Recorded], turn: str) -> int:
    """Index of the counting attempt's ``turn_started`` (else of the turn's user message,
    else 0), by the session model's account of the turn."""
    state = fold(records) if records else None
    found = state.turns.get(turn) if state is not None else None
    if found is None:
        return 0
    start = found.started or (found.user.version if found.user is not None else 0)
    return next((i for i, rec in enumerate(records) if rec.version == start), 0)


def _rest(full: str, streamed: str) -> str:
    """What ``full`` has beyond the ``streamed`` prefix ("" when it is not a prefix)."""
    if len(full) > len(streamed) and full.startswith(streamed):
        return full[len(streamed) :]
    return ""
