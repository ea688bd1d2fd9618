"""The Anthropic Messages wire adapter (raw streaming events, our own assembly).

Content blocks map one to one onto parts, keyed by the block's ``index``: text,
thinking (its ``signature`` ends up in ``ReasoningEnd.provider_data``), redacted
thinking (``{"redacted_data": ...}``) and tool use (``input_json_delta`` fragments).
Usage combines ``message_start`` (input, cache reads) with ``message_delta`` (output).
A stream without ``message_stop`` is a broken stream (``network``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Final

import httpx2
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
from threadline.services.agent.providers.anthropic_map import to_anthropic
from threadline.services.agent.providers.base import ModelRequest
from threadline.services.agent.providers.errors import ErrorContext, ProviderError
from threadline.services.agent.providers.parts import Part, PartsAssembler
from threadline.services.agent.providers.sdk_errors import translate_anthropic_error
from threadline.services.agent.providers.settings import ProviderSettings
from threadline.services.redact import Redactor, default_redactor

__all__ = ["NO_KEY", "AnthropicMessagesAdapter", "EventReader"]

log = logging.getLogger(__name__)

#: sent as x-api-key to servers that need none (the dev model); without an explicit
#: key the SDK would look for ANTHROPIC_API_KEY and credential files
NO_KEY: Final = "threadline-no-key"

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


class AnthropicMessagesAdapter:
    """A :class:`~.base.ModelAdapter` over ``AsyncAnthropic`` at ``settings.base_url``."""

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        redactor: Redactor | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        settings.check_ready()
        self._settings = settings
        self._redactor = redactor if redactor is not None else default_redactor()
        self._redactor.add(*settings.secrets())
        self._client = AsyncAnthropic(
            api_key=settings.api_key.reveal() if settings.api_key else NO_KEY,
            base_url=settings.base_url,
            timeout=httpx2.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            max_retries=settings.max_retries_in_sdk,
            default_headers=settings.headers or None,
            http_client=http_client,
        )

    @property
    def settings(self) -> ProviderSettings:
        return self._settings

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, request: ModelRequest) -> AsyncIterator[Part]:
        wire = to_anthropic(request, self._settings)
        ctx = ErrorContext(self._settings, wire.model, self._redactor)
        reader = EventReader(PartsAssembler())
        stream: AsyncStream[RawMessageStreamEvent] | None = None
        mid_stream = False
        try:
            stream = await self._client.messages.create(
                model=wire.model,
                max_tokens=wire.max_tokens,
                messages=wire.messages,
                system=wire.system or omit,
                tools=wire.tools or omit,
                thinking=wire.thinking or omit,
                stream=True,
                extra_body={"temperature": wire.temperature}
                if wire.temperature is not None
                else None,
            )
            mid_stream = True
            async for event in stream:
                for part in reader.feed(event):
                    yield part
            if not reader.stopped:
                raise ctx.ended_early()
            for part in reader.assembler.complete():
                yield part
        except (AnthropicError, httpx2.HTTPError, ProviderError, ValueError) as exc:
            error = translate_anthropic_error(exc, ctx, mid_stream=mid_stream)
            log.info("%s stream failed: %s (%s)", self._settings.name, error.message, error.kind)
            raise error from None
        finally:
            if stream is not None:
                await stream.close()
