"""The Anthropic Messages wire adapter (raw streaming events, our own assembly).

Content blocks map one to one onto parts, keyed by the block's ``index``: text,
thinking (its ``signature`` ends up in ``ReasoningEnd.provider_data``), redacted
thinking (``{"redacted_data": ...}``) and tool use (``input_json_delta`` fragments).
Usage combines ``message_start`` (input, cache reads) with ``message_delta`` (output).
A stream without ``message_stop`` is a broken stream (``network``).
"""

from __future__ import annotations

import json
from typing import Final

from anthropic import AnthropicError, AsyncAnthropic, AsyncStream, omit
from anthropic.types import (
    InputJSONDelta,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStreamEvent,
    RedactedThinkingBlock,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)

from threadline.events.schema import FinishReason, Usage
from threadline.services.agent.providers.anthropic_map import AnthropicRequest, to_anthropic
from threadline.services.agent.providers.base import ModelRequest
from threadline.services.agent.providers.errors import ErrorContext, ProviderError
from threadline.services.agent.providers.parts import Part, PartsAssembler
from threadline.services.agent.providers.sdk_adapter import NO_KEY, ClientOptions, SdkAdapter
from threadline.services.agent.providers.sdk_errors import translate_anthropic_error

__all__ = ["NO_KEY", "AnthropicMessagesAdapter", "EventReader"]

_FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class EventReader:
    """Feeds raw stream events into a :class:`PartsAssembler`; tracks usage and the end."""

    def __init__(self, assembler: PartsAssembler) -> None:
        self.assembler = assembler
        self.stopped = False
        self._usage = Usage()

    def feed(self, event: RawMessageStreamEvent) -> list[Part]:
        asm = self.assembler
        if isinstance(event, RawContentBlockDeltaEvent):
            return self._delta(event)
        if isinstance(event, RawContentBlockStartEvent):
            return self._start(event)
        if isinstance(event, RawContentBlockStopEvent):
            return asm.end(event.index)
        if isinstance(event, RawMessageStartEvent):
            u = event.message.usage
            cache_read = u.cache_read_input_tokens or 0
            total_in = (u.input_tokens or 0) + (u.cache_creation_input_tokens or 0) + cache_read
            self._usage = Usage(
                input_tokens=total_in,
                output_tokens=u.output_tokens or 0,
                cached_input_tokens=cache_read,
            )
            asm.usage(self._usage)
        elif isinstance(event, RawMessageDeltaEvent):
            d = event.usage
            details = d.output_tokens_details
            self._usage = Usage(
                input_tokens=self._usage.input_tokens,
                output_tokens=d.output_tokens or self._usage.output_tokens,
                reasoning_tokens=details.thinking_tokens if details else 0,
                cached_input_tokens=self._usage.cached_input_tokens,
            )
            asm.usage(self._usage)
            if event.delta.stop_reason is not None:
                asm.finish(_FINISH.get(event.delta.stop_reason, "stop"))
        elif event.type == "message_stop":
            self.stopped = True
            return asm.end_all()
        return []

    def _start(self, event: RawContentBlockStartEvent) -> list[Part]:
        block, asm, key = event.content_block, self.assembler, event.index
        if isinstance(block, TextBlock):
            return asm.text(key, block.text)
        if isinstance(block, ThinkingBlock):
            out = asm.reasoning(key, block.thinking)
            return out + (
                asm.reasoning_data(key, {"signature": block.signature}) if block.signature else []
            )
        if isinstance(block, RedactedThinkingBlock):
            return asm.reasoning_data(key, {"redacted_data": block.data})
        if isinstance(block, ToolUseBlock):
            # the API sends "input": {} here and the input as deltas; a server that
            # sends the whole input at once is understood too
            arguments = json.dumps(block.input) if block.input else ""
            return asm.tool_call(key, call_id=block.id, name=block.name, arguments=arguments)
        return []  # server-side tool blocks: not ours to run

    def _delta(self, event: RawContentBlockDeltaEvent) -> list[Part]:
        delta, asm, key = event.delta, self.assembler, event.index
        if isinstance(delta, TextDelta):
            return asm.text(key, delta.text)
        if isinstance(delta, ThinkingDelta):
            return asm.reasoning(key, delta.thinking)
        if isinstance(delta, SignatureDelta):
            return asm.reasoning_data(key, {"signature": delta.signature})
        if isinstance(delta, InputJSONDelta):
            return asm.tool_call(key, arguments=delta.partial_json)
        return []  # citations


class AnthropicMessagesAdapter(SdkAdapter[AsyncAnthropic, AnthropicRequest, RawMessageStreamEvent]):
    """A :class:`~.base.ModelAdapter` over ``AsyncAnthropic`` at ``settings.base_url``."""

    sdk_error = AnthropicError

    def _connect(self, options: ClientOptions) -> AsyncAnthropic:
        return AsyncAnthropic(**options)

    def _wire(self, request: ModelRequest) -> AnthropicRequest:
        return to_anthropic(request, self._settings)

    def _reader(self) -> EventReader:
        return EventReader(PartsAssembler())

    async def _open(self, wire: AnthropicRequest) -> AsyncStream[RawMessageStreamEvent]:
        return await self._client.messages.create(
            model=wire.model,
            max_tokens=wire.max_tokens,
            messages=wire.messages,
            system=wire.system or omit,
            tools=wire.tools or omit,
            thinking=wire.thinking or omit,
            stream=True,
            extra_body=wire.sampling() or None,
        )

    def _translate(self, exc: Exception, ctx: ErrorContext, *, mid_stream: bool) -> ProviderError:
        return translate_anthropic_error(exc, ctx, mid_stream=mid_stream)
