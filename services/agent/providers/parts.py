"""The normalised stream vocabulary, and the one place that produces it.

Every adapter turns its provider's stream into the same sequence of :data:`Part`s:

* text and reasoning blocks: ``*Start``, one or more ``*Delta``, ``*End``;
* tool calls: ``ToolCallStart``, ``ToolCallDelta`` (argument fragments), ``ToolCallEnd``
  with the parsed arguments (or a ``parse_error``: invalid JSON never raises);
* then ``UsagePart`` (when the provider reported usage) and ``FinishPart``, last.

Adapters do not emit parts themselves: they feed raw fragments, keyed by the vendor's
own block identifier (OpenAI's tool-call ``index``, Anthropic's content-block
``index``...), into a :class:`PartsAssembler`, which keeps the start/delta/end
bookkeeping in one place (the idea of pydantic-ai's ``_parts_manager``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from threadline.events.schema import FinishReason, Usage

__all__ = [
    "FinishPart",
    "Part",
    "PartsAssembler",
    "ReasoningDelta",
    "ReasoningEnd",
    "ReasoningStart",
    "TextDelta",
    "TextEnd",
    "TextStart",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "UsagePart",
    "parse_arguments",
]


class _Part(msgspec.Struct, frozen=True, tag_field="part"):
    """Base of every part kind."""


class TextStart(_Part, frozen=True, tag="text_start"):
    pass


class TextDelta(_Part, frozen=True, tag="text_delta"):
    text: str


class TextEnd(_Part, frozen=True, tag="text_end"):
    pass


class ReasoningStart(_Part, frozen=True, tag="reasoning_start"):
    pass


class ReasoningDelta(_Part, frozen=True, tag="reasoning_delta"):
    text: str


class ReasoningEnd(_Part, frozen=True, tag="reasoning_end"):
    #: opaque data to send back to the same provider (e.g. ``{"signature": "..."}``)
    provider_data: dict[str, Any] = msgspec.field(default_factory=dict)


class ToolCallStart(_Part, frozen=True, tag="tool_call_start"):
    #: position of the call among this response's tool calls (0, 1, ...)
    index: int
    call_id: str
    name: str


class ToolCallDelta(_Part, frozen=True, tag="tool_call_delta"):
    call_id: str
    arguments_delta: str


class ToolCallEnd(_Part, frozen=True, tag="tool_call_end"):
    call_id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str
    #: why ``raw_arguments`` could not be used (``arguments`` is then ``{}``)
    parse_error: str = ""


class UsagePart(_Part, frozen=True, tag="usage"):
    usage: Usage


class FinishPart(_Part, frozen=True, tag="finish"):
    reason: FinishReason


Part = (
    TextStart
    | TextDelta
    | TextEnd
    | ReasoningStart
    | ReasoningDelta
    | ReasoningEnd
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | UsagePart
    | FinishPart
)


def parse_arguments(raw: str) -> tuple[dict[str, Any], str]:
    """Tool-call arguments and a parse error ("" when fine). Empty means no arguments."""
    if not raw.strip():
        return {}, ""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return {}, f"the arguments are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return {}, f"the arguments must be a JSON object, not {type(value).__name__}"
    return value, ""


_Kind = Literal["text", "reasoning", "tool"]


@dataclass
class _Block:
    kind: _Kind
    started: bool = False
    # reasoning: provider data gathered for the end part
    data: dict[str, Any] = field(default_factory=dict)
    # tool calls
    index: int = 0
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    unsent: list[str] = field(default_factory=list)


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class PartsAssembler:
    """Turns keyed provider fragments into well-ordered parts.

    Each ``text``/``reasoning``/``tool_call``/``end`` call returns the parts to emit now.
    Text and reasoning are prose: a fragment for a new block ends any open text or
    reasoning block first (and so does a new tool call), which is how streams without
    explicit block ends (OpenAI) get their end parts. Tool calls stay open until
    :meth:`end` or :meth:`end_all`, so parallel calls may interleave their argument
    fragments. A tool call's start is held back until its name is known; a missing
    call id is generated. :meth:`complete` ends whatever is open and appends usage and
    the finish reason.
    """

    def __init__(self, *, new_call_id: Callable[[], str] = _new_call_id) -> None:
        self._new_call_id = new_call_id
        self._open: dict[Hashable, _Block] = {}
        self._tool_calls = 0
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None

    # ------------------------------------------------------------------ queries

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._finish

    @property
    def tool_calls(self) -> int:
        """How many tool calls were started so far."""
        return self._tool_calls

    # ------------------------------------------------------------------ fragments

    def text(self, key: Hashable, text: str) -> list[Part]:
        return self._prose(key, "text", text)

    def reasoning(self, key: Hashable, text: str) -> list[Part]:
        return self._prose(key, "reasoning", text)

    def reasoning_data(self, key: Hashable, data: Mapping[str, Any]) -> list[Part]:
        """Attach provider data (e.g. a signature) to reasoning block ``key``."""
        out = self._open_block(key, "reasoning")
        block = self._open[key]
        if not block.started:
            block.started = True
            out.append(ReasoningStart())
        block.data.update(data)
        return out

    def tool_call(
        self,
        key: Hashable,
        *,
        call_id: str | None = None,
        name: str | None = None,
        arguments: str = "",
    ) -> list[Part]:
        """A fragment of tool call ``key``: any of its id, name and an arguments piece."""
        out = self._open_block(key, "tool")
        block = self._open[key]
        if call_id and not block.started:
            block.call_id = call_id
        if name and not block.started:
            block.name = name
        if arguments:
            block.arguments.append(arguments)
            block.unsent.append(arguments)
        if block.name and not block.started:
            out.append(self._start_tool(block))
        if block.started and block.unsent:
            out.append(ToolCallDelta(block.call_id, "".join(block.unsent)))
            block.unsent.clear()
        return out

    def end(self, key: Hashable) -> list[Part]:
        """Block ``key`` is complete (no-op when it is not open)."""
        block = self._open.pop(key, None)
        return [] if block is None else self._end(block)

    def end_all(self) -> list[Part]:
        """End every open block, in the order they were opened."""
        out: list[Part] = []
        for key in list(self._open):
            out.extend(self.end(key))
        return out

    def usage(self, usage: Usage) -> None:
        """Record the usage to report (the latest report wins)."""
        self._usage = usage

    def finish(self, reason: FinishReason) -> None:
        """Record the finish reason to report."""
        self._finish = reason

    def complete(self) -> list[Part]:
        """End open blocks, then usage (if reported), then the finish reason.

        ``"stop"`` becomes ``"tool_calls"`` when the response asked for tools (some
        OpenAI-compatible servers report "stop" either way); no recorded finish
        reason means ``"stop"``: callers that need one check :attr:`finish_reason`.
        """
        out = self.end_all()
        if self._usage is not None:
            out.append(UsagePart(self._usage))
        reason = self._finish or "stop"
        if reason == "stop" and self._tool_calls:
            reason = "tool_calls"
        out.append(FinishPart(reason))
        return out

    # ------------------------------------------------------------------ internals

    def _prose(self, key: Hashable, kind: _Kind, text: str) -> list[Part]:
        if not text:
            return []
        out = self._open_block(key, kind)
        block = self._open[key]
        if not block.started:
            block.started = True
            out.append(TextStart() if kind == "text" else ReasoningStart())
        out.append(TextDelta(text) if kind == "text" else ReasoningDelta(text))
        return out

    def _open_block(self, key: Hashable, kind: _Kind) -> list[Part]:
        """Make ``key`` an open block of ``kind``, ending what a new block ends."""
        block = self._open.get(key)
        if block is not None and block.kind == kind:
            return []
        out = self.end(key) if block is not None else []
        for other in [k for k, b in self._open.items() if b.kind != "tool"]:
            out.extend(self.end(other))
        self._open[key] = _Block(kind)
        return out

    def _start_tool(self, block: _Block) -> ToolCallStart:
        block.started = True
        block.index = self._tool_calls
        self._tool_calls += 1
        block.call_id = block.call_id or self._new_call_id()
        return ToolCallStart(block.index, block.call_id, block.name)

    def _end(self, block: _Block) -> list[Part]:
        if block.kind == "text":
            return [TextEnd()] if block.started else []
        if block.kind == "reasoning":
            return [ReasoningEnd(dict(block.data))] if block.started else []
        out: list[Part] = []
        if not block.started:
            if not block.name and not block.arguments and not block.call_id:
                return []
            out.append(self._start_tool(block))
            if block.unsent:
                out.append(ToolCallDelta(block.call_id, "".join(block.unsent)))
        raw = "".join(block.arguments)
        arguments, error = parse_arguments(raw)
        if not block.name:
            error = error or "the model called a tool without a name"
        out.append(ToolCallEnd(block.call_id, block.name, arguments, raw, error))
        return out
