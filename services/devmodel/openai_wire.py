"""The OpenAI Chat Completions wire format: request parsing and response rendering."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

from .conversation import (
    Conversation,
    Message,
    Positive,
    Request,
    count_words,
    read_request,
    require_dict,
    require_list,
    text_of,
)
from .player import Frame, Reply
from .script import Failure, Script

_encode = msgspec.json.Encoder().encode
_FINGERPRINT = "fp_threadline_dev"


class _Request(Request):
    stream_options: dict[str, Any] | None = None
    max_completion_tokens: Positive | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None


def parse_request(body: dict[str, Any], api_key: str | None) -> Conversation:
    """Reduce a ``POST /v1/chat/completions`` body to a :class:`Conversation`."""
    req, conv = read_request(body, _Request, api_key, _neutral)
    conv.include_usage = bool((req.stream_options or {}).get("include_usage"))
    conv.max_tokens = req.max_completion_tokens or req.max_tokens
    for spec in req.tools:
        inner = spec.get("function") or spec.get("custom") or spec
        name = inner.get("name") if isinstance(inner, dict) else None
        if isinstance(name, str):
            conv.tools.append(name)
    return conv


def _neutral(message: dict[str, Any]) -> Message:
    role, text = message.get("role"), text_of(message.get("content"))
    calls: dict[str, str] = {}
    words = count_words(text)
    for call in require_list(message.get("tool_calls"), "tool_calls"):
        function = require_dict(call, "tool call").get("function") or {}
        calls[str(call.get("id"))] = str(function.get("name", ""))
        words += count_words(str(function.get("arguments", "")))
    results = [(str(message.get("tool_call_id")), text)] if role == "tool" else []
    return Message(text, words, role == "user", calls if role == "assistant" else {}, results)


def _usage(script: Script) -> dict[str, Any]:
    return {
        "prompt_tokens": script.input_tokens,
        "completion_tokens": script.output_tokens,
        "total_tokens": script.input_tokens + script.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": len(script.reasoning)},
    }


def _body(script: Script, kind: str, **fields: Any) -> dict[str, Any]:
    """What every completion and chunk of one starts with."""
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex,
        "object": kind,
        "created": int(time.time()),
        "model": script.model,
        "system_fingerprint": _FINGERPRINT,
        **fields,
    }


def stream(script: Script, conv: Conversation) -> Iterator[Frame]:
    """The SSE body: ``data: {chunk}`` frames, then ``data: [DONE]``."""
    chunk = _body(script, "chat.completion.chunk", choices=[{"index": 0, "delta": 0}])
    head = b"data: " + _encode(chunk).removesuffix(b"0}]}")  # ... "delta":
    usage_null = b',"usage":null' if conv.include_usage else b""
    tail = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"

    yield Frame(head + b'{"role":"assistant","content":""}' + tail)
    for token in script.reasoning:
        yield Frame(head + b'{"reasoning_content":' + _encode(token) + b"}" + tail, True)
    for token in script.text:
        yield Frame(head + b'{"content":' + _encode(token) + b"}" + tail, True)
    for index, call in enumerate(script.tool_calls):
        start = {
            "index": index,
            "id": "call_" + call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield Frame(head + b'{"tool_calls":[' + _encode(start) + b"]}" + tail, True)
        for piece in call.chunks:
            delta = {"index": index, "function": {"arguments": piece}}
            yield Frame(head + b'{"tool_calls":[' + _encode(delta) + b"]}" + tail, True)
    finish = b',"logprobs":null,"finish_reason":"' + script.finish.encode() + b'"}]'
    yield Frame(head + b"{}" + finish + usage_null + b"}\n\n")
    if conv.include_usage:
        last = head.removesuffix(b'[{"index":0,"delta":') + b"[]"
        yield Frame(last + b',"usage":' + _encode(_usage(script)) + b"}\n\n")
    yield Frame(b"data: [DONE]\n\n")


def complete(script: Script, conv: Conversation) -> bytes:
    """The non-streaming ``chat.completion`` JSON body."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(script.text) if script.text or not script.tool_calls else None,
        "refusal": None,
    }
    if script.reasoning:
        message["reasoning_content"] = "".join(script.reasoning)
    if script.tool_calls:
        message["tool_calls"] = [
            {
                "id": "call_" + call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in script.tool_calls
        ]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": script.finish}
    return _encode(_body(script, "chat.completion", choices=[choice], usage=_usage(script)))


#: per status: message, type and code of the error body
_ERRORS = {
    401: ("Incorrect API key provided: {detail}.", "invalid_request_error", "invalid_api_key"),
    404: (
        "The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: ("Rate limit reached for requests (dev model).", "requests", "rate_limit_exceeded"),
}


def _describe(failure: Failure) -> tuple[str, str, str | None]:
    """``(message, type, code)`` of the error body."""
    status = failure.status
    if failure.kind == "invalid":
        return failure.detail, "invalid_request_error", None
    if failure.kind == "notools":  # Ollama's answer, in its OpenAI-compatible API
        return failure.detail, "api_error", None
    if failure.kind == "context":
        window, requested = failure.window or 128000, failure.requested or 200000
        return (
            f"This model's maximum context length is {window} tokens. However, your "
            f"messages resulted in {requested} tokens. Please reduce the length of the "
            "messages.",
            "invalid_request_error",
            "context_length_exceeded",
        )
    if status in _ERRORS:
        template, kind, code = _ERRORS[status]
        return template.format(detail=failure.detail, model=failure.model), kind, code
    if status >= 500:
        return "The server had an error while processing your request.", "server_error", None
    return f"Dev model scripted failure ({status}).", "invalid_request_error", None


def error(failure: Failure) -> Reply:
    """The error reply, in OpenAI's ``{"error": {...}}`` shape."""
    message, kind, code = _describe(failure)
    body = {"message": message, "type": kind, "param": None, "code": code}
    headers = [(b"x-request-id", b"req_" + uuid.uuid4().hex.encode())]
    return Reply.json(failure.status, _encode({"error": body}), headers, failure.retry_after)


def models(names: tuple[str, ...]) -> bytes:
    """The ``GET /v1/models`` list."""
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "threadline"} for n in names]
    return _encode({"object": "list", "data": data})
