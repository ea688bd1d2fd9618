"""The OpenAI Chat Completions wire adapter: OpenAI, OpenRouter, Gemini, Ollama, dev.

Streams with ``stream_options.include_usage``; ``reasoning_content`` (DeepSeek-style,
Gemini) and ``reasoning`` (OpenRouter, Ollama) deltas become reasoning parts. A stream
that ends without a finish reason is a broken stream (``network``), not an answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, cast

import httpx2
from openai import AsyncOpenAI, AsyncStream, Omit, OpenAIError, omit
from openai.types.chat import ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from threadline.events.schema import FinishReason, Usage
from threadline.services.agent.providers.base import ModelRequest
from threadline.services.agent.providers.errors import ErrorContext, ProviderError
from threadline.services.agent.providers.openai_map import to_openai
from threadline.services.agent.providers.parts import Part, PartsAssembler
from threadline.services.agent.providers.sdk_errors import translate_openai_error
from threadline.services.agent.providers.settings import ProviderSettings
from threadline.services.redact import Redactor, default_redactor

__all__ = ["NO_KEY", "OpenAIChatAdapter", "chunk_parts"]

log = logging.getLogger(__name__)

#: sent as the bearer token to servers that need none (Ollama, the dev model): the SDK
#: insists on a key and would otherwise pick up OPENAI_API_KEY from the environment
NO_KEY: Final = "threadline-no-key"

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


class OpenAIChatAdapter:
    """A :class:`~.base.ModelAdapter` over ``AsyncOpenAI`` pointed at ``settings.base_url``."""

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
        self._client = AsyncOpenAI(
            api_key=settings.api_key.reveal() if settings.api_key else NO_KEY,
            base_url=settings.base_url,
            timeout=httpx2.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            max_retries=settings.max_retries_in_sdk,
            default_headers=settings.headers or None,
            http_client=http_client,
        )
        present = {h.lower() for h in settings.headers}
        self._extra_headers: dict[str, str | Omit] = {
            h: omit for h in _AMBIENT_HEADERS if h.lower() not in present
        }

    @property
    def settings(self) -> ProviderSettings:
        return self._settings

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, request: ModelRequest) -> AsyncIterator[Part]:
        wire = to_openai(request, self._settings)
        ctx = ErrorContext(self._settings, wire.model, self._redactor)
        assembler = PartsAssembler()
        stream: AsyncStream[ChatCompletionChunk] | None = None
        mid_stream = False
        try:
            stream = await self._client.chat.completions.create(
                model=wire.model,
                messages=wire.messages,
                stream=True,
                stream_options={"include_usage": True},
                tools=wire.tools or omit,
                temperature=wire.temperature if wire.temperature is not None else omit,
                max_tokens=wire.max_tokens if wire.max_tokens_param == "max_tokens" else omit,
                max_completion_tokens=(
                    wire.max_tokens if wire.max_tokens_param == "max_completion_tokens" else omit
                ),
                extra_headers=self._extra_headers,
            )
            mid_stream = True
            async for chunk in stream:
                for part in chunk_parts(chunk, assembler):
                    yield part
            if assembler.finish_reason is None:
                raise ctx.ended_early()
            for part in assembler.complete():
                yield part
        except (OpenAIError, httpx2.HTTPError, ProviderError, ValueError) as exc:
            error = translate_openai_error(exc, ctx, mid_stream=mid_stream)
            log.info("%s stream failed: %s (%s)", self._settings.name, error.message, error.kind)
            raise error from None
        finally:
            if stream is not None:
                await stream.close()
