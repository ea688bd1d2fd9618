"""What every adapter accepts and produces: :class:`ModelRequest` in, the normalised
stream of :data:`Part` values out (:class:`ModelAdapter`), and the one place that
produces those parts.

Every adapter turns its provider's stream into the same sequence of :data:`Part`s:

* ``TextDelta`` and ``ReasoningDelta`` as the model writes; a reasoning block ends with
  ``ReasoningEnd``, carrying what the provider wants back (e.g. a thinking signature);
* tool calls: ``ToolCallStart`` once the name is known, ``ToolCallEnd`` with the parsed
  arguments (or a ``parse_error``: invalid JSON never raises);
* then ``UsagePart`` (when the provider reported usage) and ``FinishPart``, last.

Adapters do not emit parts themselves: they feed raw fragments, keyed by the vendor's
own block identifier (OpenAI's tool-call ``index``, Anthropic's content-block
``index``...), into a :class:`PartsAssembler`, which keeps the bookkeeping in one place
(the idea of pydantic-ai's ``_parts_manager``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from threadline.events.conversation import Message, ToolSpec
from threadline.events.schema import FinishReason, Usage
from threadline.services.agent.providers.settings import ProviderSettings


class _Part(msgspec.Struct, frozen=True, tag_field="part"):
    """Base of every part kind."""


class TextDelta(_Part, frozen=True, tag="text_delta"):
    text: str


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
    TextDelta | ReasoningDelta | ReasoningEnd | ToolCallStart | ToolCallEnd | UsagePart | FinishPart
)


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One model step: the vendor-neutral conversation and how to sample it.

    Empty ``model`` means the provider's default model; ``None`` temperature/max_tokens
    mean the provider's configured values, ``None`` top_p the provider's default.
    ``provider_data_key`` names the entry of ``AssistantTurn.provider_data`` this
    provider reads back (e.g. a thinking signature); empty means the provider's name.
    ``reasoning_budget_tokens`` turns on extended thinking (Anthropic). The gateway
    refuses it for OpenAI-wire providers; the OpenAI adapter leaves it out (it can get
    there only through a fallback provider). See docs/providers.md, "Session settings".
    ``history``: how many of ``messages``, from the first, are a session's ended turns
    (from a turn's start; objects that never change), which an adapter may keep encoded
    between requests (:mod:`.wire_cache`).
    """

    model: str = ""
    system: str = ""
    messages: tuple[Message, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    provider_data_key: str = ""
    reasoning_budget_tokens: int | None = None
    history: int = 0


class ModelAdapter(Protocol):
    """A wire API: streams one model step as normalised parts.

    ``stream`` raises only :class:`~.errors.ProviderError` (redacted, typed); closing
    the iterator early (``aclose()``, or leaving an ``async for``) cancels the request.
    """

    @property
    def settings(self) -> ProviderSettings: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[Part]: ...

    async def aclose(self) -> None: ...


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


@dataclass
class _Call:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    started: bool = False


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class PartsAssembler:
    """Turns keyed provider fragments into well-ordered parts.

    Each ``text``/``reasoning``/``tool_call``/``end`` call returns the parts to emit now.
    One reasoning block is open at a time: a fragment of another block (text, another
    reasoning block, a tool call) ends it, which is how streams without explicit block
    ends (OpenAI) get their ``ReasoningEnd``. Tool calls stay open until :meth:`end` or
    :meth:`end_all`, so parallel calls may interleave their argument fragments. A tool
    call's start is held back until its name is known; a missing call id is generated.
    :meth:`complete` ends whatever is open and appends usage and the finish reason.
    """

    def __init__(self, *, new_call_id: Callable[[], str] = _new_call_id) -> None:
        self._new_call_id = new_call_id
        self._calls: dict[Hashable, _Call] = {}
        #: the open reasoning block: its key and the provider data gathered for its end
        self._reasoning: tuple[Hashable, dict[str, Any]] | None = None
        self._tool_calls = 0
        self._usage: Usage | None = None
        #: the finish reason to report (set by the reader)
        self.finish_reason: FinishReason | None = None

    def text(self, key: Hashable, text: str) -> list[Part]:
        return [*self._end_reasoning(), TextDelta(text)] if text else []

    def reasoning(self, key: Hashable, text: str) -> list[Part]:
        return [*self._open_reasoning(key), ReasoningDelta(text)] if text else []

    def reasoning_data(self, key: Hashable, data: Mapping[str, Any]) -> list[Part]:
        """Attach provider data (e.g. a signature) to reasoning block ``key``."""
        out = self._open_reasoning(key)
        assert self._reasoning is not None
        self._reasoning[1].update(data)
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
        out = self._end_reasoning()
        call = self._calls.setdefault(key, _Call())
        if not call.started:
            call.call_id, call.name = call_id or call.call_id, name or call.name
        if arguments:
            call.arguments.append(arguments)
        if call.name and not call.started:
            out.append(self._start(call))
        return out

    def end(self, key: Hashable) -> list[Part]:
        """Block ``key`` is complete (no-op when it is not open)."""
        if self._reasoning is not None and self._reasoning[0] == key:
            return self._end_reasoning()
        call = self._calls.pop(key, None)
        return [] if call is None else self._end_call(call)

    def end_all(self) -> list[Part]:
        """End every open block (tool calls in the order they were opened)."""
        out = self._end_reasoning()
        for key in list(self._calls):
            out.extend(self.end(key))
        return out

    def usage(self, usage: Usage) -> None:
        """Record the usage to report (the latest report wins)."""
        self._usage = usage

    def complete(self) -> list[Part]:
        """End open blocks, then usage (if reported), then the finish reason.

        ``"stop"`` becomes ``"tool_calls"`` when the response asked for tools (some
        OpenAI-compatible servers report "stop" either way); no recorded finish
        reason means ``"stop"`` (the readers check that the stream ended properly).
        """
        out = self.end_all()
        if self._usage is not None:
            out.append(UsagePart(self._usage))
        reason = self.finish_reason or "stop"
        out.append(FinishPart("tool_calls" if reason == "stop" and self._tool_calls else reason))
        return out

    def _open_reasoning(self, key: Hashable) -> list[Part]:
        if self._reasoning is not None and self._reasoning[0] == key:
            return []
        out = self._end_reasoning()
        self._reasoning = (key, {})
        return out

    def _end_reasoning(self) -> list[Part]:
        ended, self._reasoning = self._reasoning, None
        return [] if ended is None else [ReasoningEnd(ended[1])]

    def _start(self, call: _Call) -> ToolCallStart:
        call.started = True
        call.call_id = call.call_id or self._new_call_id()
        self._tool_calls += 1
        return ToolCallStart(self._tool_calls - 1, call.call_id, call.name)

    def _end_call(self, call: _Call) -> list[Part]:
        if not (call.name or call.call_id or call.arguments):
            return []
        out: list[Part] = [] if call.started else [self._start(call)]
        raw = "".join(call.arguments)
        arguments, error = parse_arguments(raw)
        if not call.name:
            error = error or "the model called a tool without a name"
        out.append(ToolCallEnd(call.call_id, call.name, arguments, raw, error))
        return out
