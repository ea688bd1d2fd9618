"""The Anthropic Messages wire adapter (raw streaming events, our own assembly).

Content blocks map one to one onto parts, keyed by the block's ``index``: text,
thinking (its ``signature`` ends up in ``ReasoningEnd.provider_data``), redacted
thinking (``{"redacted_data": ...}``) and tool use (``input_json_delta`` fragments).
Usage combines ``message_start`` (input, cache reads) with ``message_delta`` (output).
A stream without ``message_stop`` is a broken stream (``network``); an ``error`` event
is the provider's error. Each event is decoded by msgspec into :class:`Event`, which
holds only the fields read here.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Final

import httpx2
import msgspec
from anthropic import AsyncAnthropic

from threadline.events.schema import FinishReason, Usage
from threadline.services.agent.providers.anthropic_map import (
    AnthropicRequest,
    data_key,
    map_messages,
    to_anthropic,
)
from threadline.services.agent.providers.errors import json_or_text
from threadline.services.agent.providers.parts import ModelRequest, Part
from threadline.services.agent.providers.sdk_adapter import ClientOptions, SdkAdapter, StreamReader
from threadline.services.agent.providers.wire_cache import WireCache

_FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class _OutputDetails(msgspec.Struct):
    thinking_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    output_tokens_details: _OutputDetails | None = None


class _Message(msgspec.Struct):
    usage: _Usage | None = None


class _Content(msgspec.Struct):
    """A ``content_block_start``'s block (text, thinking, redacted thinking, tool use) or
    a ``content_block_delta``'s or ``message_delta``'s delta."""

    type: str = ""
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    partial_json: str | None = None
    stop_reason: str | None = None


class Event(msgspec.Struct):
    """A Messages stream event as far as we read it."""

    type: str = ""
    index: int = 0
    message: _Message | None = None
    content_block: _Content | None = None
    delta: _Content | None = None
    usage: _Usage | None = None
    error: Any = None


_decode_event: Final = msgspec.json.Decoder(Event).decode


class EventReader(StreamReader):
    """Feeds stream events into the assembler; tracks usage and the end."""

    _usage = Usage()  #: so far (``message_start``, then each ``message_delta``)

    def feed(self, event: bytes, data: bytes) -> list[Part]:
        if event == b"error":
            raise self.ctx.stream_error(json_or_text(data))
        if self.stopped or not data:
            return []
        ev = _decode_event(data)
        kind, asm = ev.type, self.assembler
        if kind in ("content_block_start", "content_block_delta"):
            content = ev.content_block or ev.delta
            return [] if content is None else self._content(ev.index, content)
        if kind == "content_block_stop":
            return asm.end(ev.index)
        if kind == "message_start" and ev.message is not None and ev.message.usage is not None:
            self._started(ev.message.usage)
        elif kind == "message_delta":
            self._delta_usage(ev.usage or _Usage())
            if ev.delta is not None and ev.delta.stop_reason is not None:
                asm.finish_reason = _FINISH.get(ev.delta.stop_reason, "stop")
        elif kind == "message_stop":
            self.stopped = True
            return asm.end_all()
        elif kind == "error":
            raise self.ctx.stream_error({"error": ev.error})
        return []

    def _started(self, u: _Usage) -> None:
        cache_read = u.cache_read_input_tokens or 0
        total_in = (u.input_tokens or 0) + (u.cache_creation_input_tokens or 0) + cache_read
        self._usage = Usage(
            input_tokens=total_in,
            output_tokens=u.output_tokens or 0,
            cached_input_tokens=cache_read,
        )
        self.assembler.usage(self._usage)

    def _delta_usage(self, d: _Usage) -> None:
        details = d.output_tokens_details
        self._usage = msgspec.structs.replace(
            self._usage,
            output_tokens=d.output_tokens or self._usage.output_tokens,
            reasoning_tokens=(details.thinking_tokens or 0) if details else 0,
        )
        self.assembler.usage(self._usage)

    def _content(self, key: int, c: _Content) -> list[Part]:
        """A ``content_block_start``'s block or a ``content_block_delta``'s delta."""
        asm, kind = self.assembler, c.type.removesuffix("_delta")
        if kind == "text":
            return asm.text(key, c.text or "")
        if kind in ("thinking", "signature"):
            out = asm.reasoning(key, c.thinking or "")
            return out + (
                asm.reasoning_data(key, {"signature": c.signature}) if c.signature else []
            )
        if kind == "redacted_thinking":
            return asm.reasoning_data(key, {"redacted_data": c.data or ""})
        if kind in ("tool_use", "input_json"):
            # the API starts a block with "input": {} and sends the input as deltas; a
            # server that sends the whole input at once is understood too
            arguments = c.partial_json or (json.dumps(c.input) if c.input else "")
            return asm.tool_call(key, call_id=c.id, name=c.name, arguments=arguments)
        return []  # server-side tool blocks and citations: not ours


class AnthropicMessagesAdapter(SdkAdapter[AsyncAnthropic, AnthropicRequest]):
    """A :class:`~.base.ModelAdapter` over ``AsyncAnthropic`` at ``settings.base_url``."""

    reader = EventReader
    _caches: dict[str, WireCache]  # per provider_data key

    def _connect(self, options: ClientOptions) -> AsyncAnthropic:
        self._caches = {}
        return AsyncAnthropic(**options)

    def _wire(self, request: ModelRequest) -> AnthropicRequest:
        key = data_key(request, self._settings)
        if (cache := self._caches.get(key)) is None:
            cache = self._caches[key] = WireCache(
                functools.partial(map_messages, provider_data_key=key)
            )
        return to_anthropic(request, self._settings, cache)

    async def _send(self, wire: AnthropicRequest) -> httpx2.Response:
        return await self._client.post(
            "/v1/messages", cast_to=httpx2.Response, content=wire.body(), stream=True
        )
