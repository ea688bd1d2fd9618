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
* ``fallback`` becomes a ``data-fallback`` part ``{kind, reason, from, to, attempt}``.
* A new attempt (a later ``turn_started``) supersedes the earlier one. Events of older
  attempts are dropped. If the superseded attempt had already shown text, reasoning or
  tools, its open parts are closed and a ``data-restart`` part ``{attempt, superseded}``
  marks where the new attempt begins (parts cannot be retracted in this protocol);
  otherwise the new attempt simply carries on. A replay starts at the latest attempt.
* ``turn_completed`` -> ``finish`` (the last step's finish reason); ``turn_failed`` ->
  ``error`` then ``finish`` (``error``); ``turn_cancelled`` -> ``abort`` then ``finish``
  (``other``). Then the stream ends with ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from threadline.events import schema as ev
from threadline.events.schema import Envelope, FinishReason
from threadline.services.gateway.aisdk import protocol as p

_FINISH: Final[dict[FinishReason, p.UIFinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
    "error": "error",
    "cancelled": "other",
}


class TurnChunks:
    """The chunks of one turn's assistant message, event by event."""

    def __init__(self, turn: str) -> None:
        self.turn = turn
        #: the attempt being shown (0: none started yet)
        self.attempt = 0
        self.step: int | None = None
        self.text_id: str | None = None
        self.reasoning_id: str | None = None
        self.parts = 0
        #: whether the current attempt showed text, reasoning or tools
        self.shown = False
        #: tool calls of the current attempt shown so far
        self.calls: set[str] = set()
        #: text and reasoning streamed in the current step
        self.step_text = ""
        self.step_reasoning = ""
        self.finish_reason: p.UIFinishReason = "stop"
        self.done = False
        self._handlers: dict[type[Any], Callable[[Any], list[p.Chunk]]] = {
            ev.TurnStarted: self._turn_started,
            ev.TextDelta: self._text,
            ev.ReasoningDelta: self._reasoning,
            ev.ToolCall: self._tool_call,
            ev.ToolResult: self._tool_result,
            ev.AssistantMessage: self._assistant_message,
            ev.Fallback: self._fallback,
            ev.TurnCompleted: self._completed,
            ev.TurnFailed: self._failed,
            ev.TurnCancelled: self._cancelled,
        }

    def start(self) -> list[p.Chunk]:
        return [p.Start(message_id=self.turn)]

    def feed(self, env: Envelope) -> list[p.Chunk]:
        """The chunks for one more event (none for other turns, stale attempts, the end)."""
        if self.done or env.turn != self.turn:
            return []
        handler = self._handlers.get(type(env.event))
        if handler is None:  # user_message, cancel_requested
            return []
        attempt = self.attempt if env.attempt is None else env.attempt
        out: list[p.Chunk] = []
        if attempt < self.attempt:
            return []  # a superseded attempt's straggler
        if attempt > self.attempt:
            out += self._new_attempt(attempt)
        return out + handler(env.event)

    # ------------------------------------------------------------------ attempts

    def _new_attempt(self, attempt: int) -> list[p.Chunk]:
        out = self._close_step()
        if self.attempt and self.shown:
            data = p.RestartData(attempt=attempt, superseded=self.attempt)
            out.append(p.DataRestart(id=f"restart-{attempt}", data=data))
        self.attempt = attempt
        self.shown = False
        self.calls = set()
        return out

    def _turn_started(self, event: ev.TurnStarted) -> list[p.Chunk]:
        return []  # the attempt switch happened in feed()

    # ------------------------------------------------------------------ parts

    def _part_id(self, kind: str) -> str:
        self.parts += 1
        return f"{kind}-{self.attempt}-{self.step}-{self.parts}"

    def _open_step(self, step: int) -> list[p.Chunk]:
        if self.step == step:
            return []
        out = self._close_step()
        self.step = step
        self.step_text = self.step_reasoning = ""
        out.append(p.StartStep())
        return out

    def _close_parts(self) -> list[p.Chunk]:
        out: list[p.Chunk] = []
        if self.text_id is not None:
            out.append(p.TextEnd(id=self.text_id))
            self.text_id = None
        if self.reasoning_id is not None:
            out.append(p.ReasoningEnd(id=self.reasoning_id))
            self.reasoning_id = None
        return out

    def _close_step(self) -> list[p.Chunk]:
        if self.step is None:
            return []
        out = self._close_parts()
        out.append(p.FinishStep())
        self.step = None
        return out

    def _text_chunks(self, text: str) -> list[p.Chunk]:
        out: list[p.Chunk] = []
        if self.reasoning_id is not None:
            out += self._close_parts()
        if self.text_id is None:
            self.text_id = self._part_id("text")
            out.append(p.TextStart(id=self.text_id))
        out.append(p.TextDelta(id=self.text_id, delta=text))
        self.step_text += text
        self.shown = True
        return out

    def _reasoning_chunks(self, text: str) -> list[p.Chunk]:
        out: list[p.Chunk] = []
        if self.text_id is not None:
            out += self._close_parts()
        if self.reasoning_id is None:
            self.reasoning_id = self._part_id("reasoning")
            out.append(p.ReasoningStart(id=self.reasoning_id))
        out.append(p.ReasoningDelta(id=self.reasoning_id, delta=text))
        self.step_reasoning += text
        self.shown = True
        return out

    def _text(self, event: ev.TextDelta) -> list[p.Chunk]:
        out = self._open_step(event.step)
        return out + (self._text_chunks(event.text) if event.text else [])

    def _reasoning(self, event: ev.ReasoningDelta) -> list[p.Chunk]:
        out = self._open_step(event.step)
        return out + (self._reasoning_chunks(event.text) if event.text else [])

    # ------------------------------------------------------------------ tools

    def _call_chunks(self, call_id: str, tool: str, arguments: Any) -> list[p.Chunk]:
        self.calls.add(call_id)
        self.shown = True
        return [
            *self._close_parts(),
            p.ToolInputStart(tool_call_id=call_id, tool_name=tool, dynamic=True),
            p.ToolInputAvailable(
                tool_call_id=call_id, tool_name=tool, input=arguments, dynamic=True
            ),
        ]

    def _tool_call(self, event: ev.ToolCall) -> list[p.Chunk]:
        out = self._open_step(event.step)
        if event.call_id in self.calls:
            return out
        return out + self._call_chunks(event.call_id, event.tool, event.arguments)

    def _tool_result(self, event: ev.ToolResult) -> list[p.Chunk]:
        out = self._open_step(event.step)
        if event.call_id not in self.calls:  # never without its call, but keep the client sane
            out += self._call_chunks(event.call_id, event.tool, {})
        if event.is_error:
            text = event.content or event.summary or "the tool failed"
            out.append(p.ToolOutputError(tool_call_id=event.call_id, error_text=text, dynamic=True))
        else:
            out.append(
                p.ToolOutputAvailable(
                    tool_call_id=event.call_id, output=event.content, dynamic=True
                )
            )
        return out

    # ------------------------------------------------------------------ steps and ends

    def _assistant_message(self, event: ev.AssistantMessage) -> list[p.Chunk]:
        out = self._open_step(event.step)
        missing_reasoning = _rest(event.reasoning, self.step_reasoning)
        if missing_reasoning:
            out += self._reasoning_chunks(missing_reasoning)
        missing_text = _rest(event.text, self.step_text)
        if missing_text:
            out += self._text_chunks(missing_text)
        for call in event.tool_calls:
            if call.call_id not in self.calls:
                out += self._call_chunks(call.call_id, call.tool, call.arguments)
        self.finish_reason = _FINISH.get(event.finish_reason, "other")
        return out + self._close_parts()

    def _fallback(self, event: ev.Fallback) -> list[p.Chunk]:
        data = p.FallbackData(
            kind=event.fallback,
            reason=event.reason,
            from_=event.from_,
            to=event.to,
            attempt=event.attempt,
        )
        return [*self._close_parts(), p.DataFallback(data=data)]

    def _end(self, *chunks: p.Chunk) -> list[p.Chunk]:
        self.done = True
        return [*self._close_step(), *chunks]

    def _completed(self, event: ev.TurnCompleted) -> list[p.Chunk]:
        return self._end(p.Finish(finish_reason=self.finish_reason))

    def _failed(self, event: ev.TurnFailed) -> list[p.Chunk]:
        text = f"{event.message} ({event.error})" if event.message else event.error
        return self._end(p.Error(error_text=text), p.Finish(finish_reason="error"))

    def _cancelled(self, event: ev.TurnCancelled) -> list[p.Chunk]:
        return self._end(p.Abort(reason=event.reason or None), p.Finish(finish_reason="other"))


def _rest(full: str, streamed: str) -> str:
    """What ``full`` has beyond the ``streamed`` prefix ("" when it is not a prefix)."""
    if len(full) > len(streamed) and full.startswith(streamed):
        return full[len(streamed) :]
    return ""
