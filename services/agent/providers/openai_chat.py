"""The OpenAI Chat Completions wire adapter: OpenAI, OpenRouter, Gemini, Ollama, dev.

Streams with ``stream_options.include_usage``; ``reasoning_content`` (DeepSeek-style,
Gemini) and ``reasoning`` (OpenRouter, Ollama) deltas become reasoning parts. A stream
that ends without a finish reason is a broken stream (``network``), not an answer; a
chunk carrying ``error`` is the provider's error. Each chunk is decoded by msgspec into
:class:`Chunk`, which holds only the fields read here.

The SDK's request building (``post``: options copied and validated, URL joined, a dozen
headers merged, about 0.7 ms a request, a tenth of the agent's CPU per turn at the
benchmark's 50-word turns) is done once: the adapter keeps the request the SDK built
(URL, headers with the key, timeouts) as a template, makes each request from it with
its body, and sends it as the SDK's ``request`` does: its hooks (``_prepare_request``,
``_send_request`` with its auth), its exception classes for timeouts, connection and
status errors. The SDK never retries (``max_retries`` 0), so its retry loop has
nothing to do. (The Anthropic SDK's request path also runs its middleware and tracing:
that adapter still calls ``post``.)
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import httpx2
import msgspec
import openai
from openai import AsyncOpenAI, omit
from openai._base_client import get_platform
from openai._models import FinalRequestOptions

from threadline.events.schema import FinishReason, Usage
from threadline.services.agent.providers.openai_map import OpenAIRequest, map_messages, to_openai
from threadline.services.agent.providers.parts import ModelRequest, Part, PartsAssembler
from threadline.services.agent.providers.sdk_adapter import ClientOptions, SdkAdapter, StreamReader
from threadline.services.agent.providers.wire_cache import WireCache

_FINISH: Final[dict[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
#: headers the SDK would fill from OPENAI_ORG_ID / OPENAI_PROJECT_ID; ours come from settings
_AMBIENT_HEADERS: Final = ("OpenAI-Organization", "OpenAI-Project")


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    refusal: str | None = None
    reasoning_content: Any = None
    reasoning: Any = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Details(msgspec.Struct):
    """``completion_tokens_details`` and ``prompt_tokens_details``."""

    reasoning_tokens: int | None = None
    cached_tokens: int | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    completion_tokens_details: _Details | None = None
    prompt_tokens_details: _Details | None = None


class Chunk(msgspec.Struct):
    """A ``chat.completion.chunk`` as far as we read it (or an error object)."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = None


_decode_chunk: Final = msgspec.json.Decoder(Chunk).decode


def _usage(usage: _Usage) -> Usage:
    completion = usage.completion_tokens_details
    prompt = usage.prompt_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        reasoning_tokens=(completion.reasoning_tokens or 0) if completion else 0,
        cached_input_tokens=(prompt.cached_tokens or 0) if prompt else 0,
    )


def _reasoning(delta: _Delta) -> str:
    for value in (delta.reasoning_content, delta.reasoning):
        if isinstance(value, str) and value:
            return value
    return ""


def _tool_calls(calls: list[_ToolCall], assembler: PartsAssembler) -> list[Part]:
    out: list[Part] = []
    for position, call in enumerate(calls):
        key = ("tool", call.index if call.index is not None else call.id or position)
        fn = call.function or _Function()
        out += assembler.tool_call(key, call_id=call.id, name=fn.name, arguments=fn.arguments or "")
    return out


class ChunkReader(StreamReader):
    """Feeds streamed chunks (first choice only) into the assembler; the stream is
    complete once a chunk gave a finish reason. Nothing after ``[DONE]`` is read (the
    rest of the body is drained, for the connection's reuse)."""

    done = False  #: ``[DONE]`` was read

    def feed(self, event: bytes, data: bytes) -> list[Part]:
        if self.done or not data:
            return []
        if data.startswith(b"[DONE]"):
            self.done = True
            return []
        chunk, asm = _decode_chunk(data), self.assembler
        if chunk.error:
            raise self.ctx.stream_error({"error": chunk.error})
        if chunk.usage is not None:
            asm.usage(_usage(chunk.usage))
        out: list[Part] = []
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue
            if (delta := choice.delta) is not None:  # most carry content alone
                if delta.reasoning_content is not None or delta.reasoning is not None:
                    out += asm.reasoning("reasoning", _reasoning(delta))
                if text := (delta.content or "") + (delta.refusal or ""):
                    out += asm.text("text", text)
                if delta.tool_calls:
                    out += _tool_calls(delta.tool_calls, asm)
            if choice.finish_reason is not None:
                out += asm.end_all()
                asm.finish_reason = _FINISH.get(choice.finish_reason, "stop")
                self.stopped = True
        return out


class OpenAIChatAdapter(SdkAdapter[AsyncOpenAI, OpenAIRequest]):
    """A :class:`~.base.ModelAdapter` over ``AsyncOpenAI`` pointed at ``settings.base_url``."""

    reader = ChunkReader
    _cache: WireCache
    #: the SDK's request to the endpoint, the template of each request (made at the first)
    _template: httpx2.Request | None

    def _connect(self, options: ClientOptions) -> AsyncOpenAI:
        self._cache = WireCache(map_messages)
        self._template = None
        return AsyncOpenAI(**options)

    def _wire(self, request: ModelRequest) -> OpenAIRequest:
        return to_openai(request, self._settings, self._cache)

    async def _send(self, wire: OpenAIRequest) -> httpx2.Response:
        template = self._template or await self._build_template()
        request = httpx2.Request(
            "POST",
            template.url,
            headers=template.headers,
            content=wire.body(),
            extensions=dict(template.extensions),
        )
        client = self._client
        if client._idempotency_header:  # none by default; a new key per request
            request.headers[client._idempotency_header] = client._idempotency_key()
        await client._prepare_request(request)
        try:
            response = await client._send_request(request, stream=True)
        except httpx2.TimeoutException as err:
            raise openai.APITimeoutError(request=request) from err
        except openai.OpenAIError:
            raise
        except Exception as err:  # as the SDK's request(): any other failure to send
            raise openai.APIConnectionError(request=request) from err
        if not response.is_success:
            await response.aread()
            raise client._make_status_error_from_response(response)
        return response

    async def _build_template(self) -> httpx2.Request:
        """The request the SDK's ``post`` would build (without its body), as it would."""
        client = self._client
        if client._platform is None:  # as request() does: reading it may block
            client._platform = await asyncio.to_thread(get_platform)
        present = {h.lower() for h in self._settings.headers}  # the SDK's are unset
        ambient = {h: omit for h in _AMBIENT_HEADERS if h.lower() not in present}
        options = FinalRequestOptions.construct(
            method="post",
            url="/chat/completions",
            content=b"",
            headers=ambient,
            security={"bearer_auth": True},
        )
        template = client._build_request(await client._prepare_options(options), retries_taken=0)
        template.headers.pop("content-length", None)
        self._template = template
        return template
