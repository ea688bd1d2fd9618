"""What ``threadline chat`` prints: the session header, its history, and live events.

Text deltas are written as they arrive, on the line that ``assistant>`` opened; tool
calls (name and arguments), tool results, fallbacks, failures and cancellations get
lines of their own. Colours only on a terminal, and never with ``NO_COLOR`` set.
"""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

from threadline.base.text import one_line
from threadline.events import schema as ev
from threadline.services.gateway.models import MessageView, SessionDetail, TurnView

_RESULT_CHARS = 300


class Renderer:
    def __init__(self, out: TextIO, *, color: bool | None = None) -> None:
        self.out = out
        self.color = out.isatty() and not os.environ.get("NO_COLOR") if color is None else color
        #: the cursor is after streamed text (a block line must start a new line first)
        self.mid_line = False
        #: the prompt is on screen, waiting for input
        self.at_prompt = False
        #: (turn, step) whose text was streamed as deltas
        self._streamed: set[tuple[str, int]] = set()
        #: the style of the text being streamed (reasoning and answer go on separate lines)
        self._streaming = ""

    # ------------------------------------------------------------------ primitives

    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def line(self, text: str, code: str = "") -> None:
        """A line of its own, after any streamed text or prompt on the current one."""
        prefix = "\n" if self.mid_line or self.at_prompt else ""
        self.mid_line = self.at_prompt = False
        self.write(prefix + (self._style(text, code) if code else text) + "\n")

    def end_line(self) -> None:
        if self.mid_line:
            self.write("\n")
            self.mid_line = False

    def prompt(self) -> None:
        self.end_line()
        self.write(self._style("you> ", "1;34"))
        self.at_prompt = True

    def input_done(self) -> None:
        """The user pressed Enter: the terminal has moved to a new line."""
        self.at_prompt = False

    def note(self, text: str) -> None:
        self.line(text, "2")

    def error(self, text: str) -> None:
        self.line(f"error: {text}", "31")

    def _stream(self, text: str, code: str = "") -> None:
        if self.mid_line and code != self._streaming:
            self.end_line()
        if not self.mid_line:
            if self.at_prompt:
                self.write("\n")
                self.at_prompt = False
            self.write(self._style("(thinking) " if code else "assistant> ", code or "1;32"))
        self._streaming = code
        self.write(self._style(text, code) if code else text)
        self.mid_line = True

    # ------------------------------------------------------------------ the session

    def header(self, detail: SessionDetail) -> None:
        model = detail.provider or "default provider"
        model += f"/{detail.model}" if detail.model else ""
        tools = ", ".join(detail.tool_servers) or "none"
        title = f' "{detail.title}"' if detail.title else ""
        self.note(f"session {detail.id}{title} · {model} · tools: {tools}")

    def history(self, detail: SessionDetail) -> None:
        status = {t.turn_id: t for t in detail.turns}
        previous: str | None = None
        for message in detail.messages:
            if previous is not None and message.turn_id != previous:
                self._turn_end(status.get(previous))
            previous = message.turn_id
            self._message(message)
        if previous is not None:
            turn = status.get(previous)
            if turn is not None and turn.status == "running" and turn.partial_text:
                self._stream(turn.partial_text)  # live deltas carry on from here
            else:
                self._turn_end(turn)

    def _message(self, m: MessageView) -> None:
        if m.role == "user":
            self.line(self._style("you> ", "1;34") + m.text)
        elif m.role == "tool":
            self._tool_result(m.tool or "", m.text, m.is_error, m.duration_ms)
        else:
            if m.reasoning:
                self.line(f"(thinking) {one_line(m.reasoning, _RESULT_CHARS)}", "2")
            if m.text:
                self._stream(m.text)
                self.end_line()
            for call in m.tool_calls:
                self._tool_call(call.tool, call.arguments)

    def _turn_end(self, turn: TurnView | None) -> None:
        if turn is None:
            return
        if turn.status == "failed":
            self.line(f"  ✗ turn failed: {turn.error or 'error'}", "31")
        elif turn.status == "cancelled":
            self.line("  ■ turn cancelled", "33")

    # ------------------------------------------------------------------ live events

    def _tool_call(self, tool: str, arguments: dict[str, Any]) -> None:
        self.line(f"  ⚙ {tool} {json.dumps(arguments, ensure_ascii=False)}", "35")

    def _tool_result(self, tool: str, content: str, is_error: bool, ms: float | None) -> None:
        took = f" ({ms:.0f} ms)" if ms else ""
        mark, shown = "✗" if is_error else "→", one_line(content, _RESULT_CHARS)
        self.line(f"  {mark} {tool}: {shown}{took}", "31" if is_error else "35")

    def event(self, env: ev.Envelope, *, mine: bool = False) -> None:  # noqa: C901 - one case per kind
        e, turn = env.event, env.turn or ""
        if isinstance(e, ev.UserMessage):
            if not mine:  # typed in another client
                self.line(self._style("you (elsewhere)> ", "1;34") + e.text)
        elif isinstance(e, ev.TurnStarted):
            if e.attempt > 1:
                self.line(f"  ↻ attempt {e.attempt} (the earlier answer is dropped)", "33")
        elif isinstance(e, ev.TextDelta):
            self._streamed.add((turn, e.step))
            self._stream(e.text)
        elif isinstance(e, ev.ReasoningDelta):
            self._stream(e.text, "2")
        elif isinstance(e, ev.ToolCall):
            self._tool_call(e.tool, e.arguments)
        elif isinstance(e, ev.ToolResult):
            self._tool_result(e.tool, e.content, e.is_error, e.duration_ms)
        elif isinstance(e, ev.AssistantMessage):
            if e.text and (turn, e.step) not in self._streamed:
                self._stream(e.text)
            self.end_line()
        elif isinstance(e, ev.Fallback):
            hop = f" ({e.from_} → {e.to})" if e.from_ or e.to else ""
            self.line(f"  ! fallback {e.fallback}{hop}: {one_line(e.reason, 200)}", "33")
        elif isinstance(e, ev.CancelRequested):
            self.line("  … stop requested", "33")
        elif isinstance(e, ev.ContextTrimmed) and e.turns:
            self.line(f"  … {e.turns} older turns left out of the model's context", "2")
        elif isinstance(e, ev.TurnCompleted):
            self.end_line()
            tokens = e.usage.output_tokens
            self.note(f"  ({e.duration_ms / 1000:.2f} s, {tokens} tokens)")
        elif isinstance(e, ev.TurnFailed):
            self.line(f"  ✗ turn failed ({e.error}): {e.message}", "31")
        elif isinstance(e, ev.TurnCancelled):
            self.line("  ■ turn cancelled", "33")
        elif isinstance(e, ev.ApprovalRequested):
            self.line(f"  ⏸ {e.tool} waits for approval", "33")
        elif isinstance(e, ev.ApprovalGranted | ev.ApprovalDenied):
            verdict = "approved" if isinstance(e, ev.ApprovalGranted) else "denied"
            why = f": {e.reason}" if e.reason else ""
            self.line(f"  {verdict} by {env.actor}{why}", "32" if verdict == "approved" else "31")
