"""The OpenAI Chat Completions wire adapter: OpenAI, OpenRouter, Gemini, Ollama, dev.

Streams with ``stream_options.include_usage``; ``reasoning_content`` (DeepSeek-style,
Gemini) and ``reasoning`` (OpenRouter, Ollama) deltas become reasoning parts. A stream
that ends without a finish reason is a broken stream (``network``), not an answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from openai import AsyncOpenAI, AsyncStream, Omit, OpenAIError, omit
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from threadline.events.schema import FinishReason, Usage
from threadline.services.agent.providers.base import ModelRequest
from threadline.services.agent.providers.errors import ErrorContext, ProviderError
from threadline.services.agent.providers.openai_map import OpenAIRequest, to_openai
from threadline.services.agent.providers.parts import Part, PartsAssembler
from threadline.services.agent.providers.sdk_adapter import NO_KEY, ClientOptions, SdkAdapter
from threadline.services.agent.providers.sdk_errors import translate_openai_error

__all__ = ["NO_KEY", "ChunkReader", "OpenAIChatAdapter", "chunk_parts"]

_FINISH: Final[dict[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
#: headers the SDK would fill from OPENAI_ORG_ID / OPENAI_PROJECT_ID; ours come from settings
_AMBIENT_HEADERS: Final = ("OpenAI-Organization", "OpenAI-Project")


def _usage(usage: CompletionUsage) -> Usage:
    completion = usage.completion_tokens_details
    prompt = usage.prompt_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        reasoning_tokens=(completion.reasoning_tokens or 0) if completion else 0,
        cached_input_tokens=(prompt.cached_tokens or 0) if prompt else 0,
    )


def _reasoning(extra: Mapping[str, Any] | None) -> str:
    for field in ("reasoning_content", "reasoning"):
        value = (extra or {}).get(field)
        if isinstance(value, str) and value:
            return value
    return ""


def chunk_parts(chunk: ChatCompletionChunk, assembler: PartsAssembler) -> list[Part]:
    """Feed one streamed chunk (first choice only) into ``assembler``."""
    out: list[Part] = []
    if chunk.usage is not None:
        assembler.usage(_usage(chunk.usage))
    for choice in chunk.choices:
        if choice.index != 0:
            continue
        delta = choice.delta
        out += assembler.reasoning("reasoning", _reasoning(delta.model_extra))
        out += assembler.text("text", (delta.content or "") + (delta.refusal or ""))
        for position, call in enumerate(delta.tool_calls or ()):
            index = cast(int | None, call.index)
            key = ("tool", index if index is not None else call.id or position)
            function = call.function
            out += assembler.tool_call(
                key,
                call_id=call.id,
                name=function.name if function else None,
                arguments=(function.arguments or "") if function else "",
            )
        if choice.finish_reason is not None:
            out += assembler.end_all()
            assembler.finish(_FINISH.get(choice.finish_reason, "stop"))
    return out


def _unset_ambient(headers: Mapping[str, str]) -> dict[str, str | Omit]:
    """The ambient headers to send unset: those ``headers`` (the settings') do not set."""
    present = {h.lower() for h in headers}
    return {h: omit for h in _AMBIENT_HEADERS if h.lower() not in present}


class ChunkReader:
    """Feeds streamed chunks into a :class:`PartsAssembler` (see :func:`chunk_parts`);
    the stream is complete once a chunk gave a finish reason."""

    def __init__(self, assembler: PartsAssembler) -> None:
        self.assembler = assembler

    @property
    def stopped(self) -> bool:
        return self.assembler.finish_reason is not None

    def feed(self, chunk: ChatCompletionChunk) -> list[Part]:
        return chunk_parts(chunk, self.assembler)


class OpenAIChatAdapter(SdkAdapter[AsyncOpenAI, OpenAIRequest, ChatCompletionChunk]):
    """A :class:`~.base.ModelAdapter` over ``AsyncOpenAI`` pointed at ``settings.base_url``."""

    sdk_error = OpenAIError

    def _connect(self, options: ClientOptions) -> AsyncOpenAI:
        return AsyncOpenAI(**options)

    def _wire(self, request: ModelRequest) -> OpenAIRequest:
        return to_openai(request, self._settings)

    def _reader(self) -> ChunkReader:
        return ChunkReader(PartsAssembler())

    async def _open(self, wire: OpenAIRequest) -> AsyncStream[ChatCompletionChunk]:
        return await self._client.chat.completions.create(
            model=wire.model,
            messages=wire.messages,
            stream=True,
            stream_options={"include_usage": True},
            tools=wire.tools or omit,
            temperature=wire.temperature if wire.temperature is not None else omit,
            top_p=wire.top_p if wire.top_p is not None else omit,
            max_tokens=wire.max_tokens if wire.max_tokens_param == "max_tokens" else omit,
            max_completion_tokens=(
                wire.max_tokens if wire.max_tokens_param == "max_completion_tokens" else omit
            ),
            extra_headers=_unset_ambient(self._settings.headers),
        )

    def _translate(self, exc: Exception, ctx: ErrorContext, *, mid_stream: bool) -> ProviderError:
        return translate_openai_error(exc, ctx, mid_stream=mid_stream)
