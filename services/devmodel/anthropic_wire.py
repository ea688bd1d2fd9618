"""The Anthropic Messages wire format: request parsing and response rendering."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import msgspec

from .conversation import (
    Conversation,
    Message,
    RequestError,
    count_words,
    optional_int,
    optional_number,
    read_messages,
    require_dict,
    require_list,
    text_of,
)
from .frames import Frame, Reply
from .script import Failure, Script

_encode = msgspec.json.Encoder().encode
#: extended thinking: the smallest budget, and the least top_p allowed with it
MIN_THINKING_BUDGET = 1024
MIN_TOP_P_THINKING = 0.95
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def parse_request(body: dict[str, Any], api_key: str | None) -> Conversation:
    """Reduce a ``POST /v1/messages`` body to a :class:`Conversation`."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model: Field required")
    messages = [require_dict(m, "message") for m in require_list(body.get("messages"), "messages")]
    if not messages:
        raise RequestError("messages: at least one message is required")
    conv = Conversation(model=model, stream=bool(body.get("stream")), api_key=api_key)
    conv.max_tokens = optional_int(body.get("max_tokens"), "max_tokens")
    _check_sampling(body, conv.max_tokens)
    for tool in require_list(body.get("tools"), "tools"):
        name = require_dict(tool, "tool").get("name")
        if isinstance(name, str):
            conv.tools.append(name)
    read_messages(conv, messages, [_neutral(m) for m in messages])
    conv.prompt_tokens += count_words(text_of(body.get("system")))
    return conv


def _check_sampling(body: dict[str, Any], max_tokens: int | None) -> None:
    """Refuse, as the API does, sampling settings out of range or at odds with
    extended thinking (budget of at least 1024, under ``max_tokens``; no temperature
    but 1; ``top_p`` from 0.95)."""
    temperature = optional_number(body.get("temperature"), "temperature", 0, 1)
    top_p = optional_number(body.get("top_p"), "top_p", 0, 1)
    thinking = body.get("thinking")
    if thinking is None or require_dict(thinking, "thinking").get("type") == "disabled":
        return
    if thinking.get("type") != "enabled":
        raise RequestError("thinking.type: Input should be 'enabled' or 'disabled'")
    budget = optional_int(thinking.get("budget_tokens"), "thinking.budget_tokens") or 0
    if budget < MIN_THINKING_BUDGET:
        raise RequestError(f"thinking.budget_tokens: must be at least {MIN_THINKING_BUDGET}")
    if max_tokens is not None and budget >= max_tokens:
        raise RequestError("max_tokens must be greater than thinking.budget_tokens")
    if temperature not in (None, 1):
        raise RequestError("temperature may only be set to 1 when thinking is enabled")
    if top_p is not None and top_p < MIN_TOP_P_THINKING:
        raise RequestError(
            f"top_p must be at least {MIN_TOP_P_THINKING} or unset when thinking is enabled"
        )


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [require_dict(block, "content block") for block in require_list(content, "content")]


def _neutral(message: dict[str, Any]) -> Message:
    blocks, role = _blocks(message), message.get("role")
    calls: dict[str, str] = {}
    results: list[tuple[str, str]] = []
    words = 0
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_use":
            calls[str(block.get("id"))] = str(block.get("name", ""))
            words += count_words(msgspec.json.encode(block.get("input", {})).decode())
        elif kind == "tool_result":
            results.append((str(block.get("tool_use_id")), text_of(block.get("content"))))
            words += count_words(results[-1][1])
        else:
            words += count_words(text_of([block]) or str(block.get("thinking", "")))
    question = role == "user" and not results
    results = results if role == "user" else []
    calls = calls if role == "assistant" else {}
    return Message(text_of(blocks), words, question, calls, results)


def _event(name: bytes, payload: bytes) -> bytes:
    return b"event: " + name + b"\ndata: " + payload + b"\n\n"


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    payload = {"type": "content_block_start", "index": index, "content_block": block}
    return _event(b"content_block_start", _encode(payload))


def _block_stop(index: int) -> Frame:
    payload = b'{"type":"content_block_stop","index":' + str(index).encode() + b"}"
    return Frame(_event(b"content_block_stop", payload))


def _deltas(
    index: int, kind: str, field: str, pieces: tuple[str, ...], token: bool = True
) -> Iterator[Frame]:
    head = b"".join(
        (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":',
            str(index).encode(),
            b',"delta":{"type":"',
            kind.encode(),
            b'","',
            field.encode(),
            b'":',
        )
    )
    for piece in pieces:
        yield Frame(head + _encode(piece) + b"}}\n\n", token)


def _message(script: Script, content: list[Any], stop_reason: str | None) -> dict[str, Any]:
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": script.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": script.input_tokens,
            "output_tokens": script.output_tokens if stop_reason else 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def stream(script: Script, conv: Conversation) -> Iterator[Frame]:
    """The SSE body: message_start, content blocks, message_delta, message_stop."""
    start = {"type": "message_start", "message": _message(script, [], None)}
    yield Frame(_event(b"message_start", _encode(start)))
    yield Frame(_event(b"ping", b'{"type":"ping"}'))
    index = 0
    if script.reasoning:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        yield Frame(_block_start(index, block))
        yield from _deltas(index, "thinking_delta", "thinking", script.reasoning)
        yield from _deltas(index, "signature_delta", "signature", (script.signature,), False)
        yield _block_stop(index)
        index += 1
    if script.text:
        yield Frame(_block_start(index, {"type": "text", "text": ""}))
        yield from _deltas(index, "text_delta", "text", script.text)
        yield _block_stop(index)
        index += 1
    for call in script.tool_calls:
        use: dict[str, Any] = {"type": "tool_use", "id": "toolu_" + call.id, "input": {}}
        use["name"] = call.name
        yield Frame(_block_start(index, use), True)
        yield from _deltas(index, "input_json_delta", "partial_json", call.chunks)
        yield _block_stop(index)
        index += 1
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _STOP_REASONS[script.finish], "stop_sequence": None},
        "usage": {"input_tokens": script.input_tokens, "output_tokens": script.output_tokens},
    }
    yield Frame(_event(b"message_delta", _encode(delta)))
    yield Frame(_event(b"message_stop", b'{"type":"message_stop"}'))


def complete(script: Script, conv: Conversation) -> bytes:
    """The non-streaming ``message`` JSON body."""
    content: list[Any] = []
    if script.reasoning:
        thinking = "".join(script.reasoning)
        content.append({"type": "thinking", "thinking": thinking, "signature": script.signature})
    if script.text:
        content.append({"type": "text", "text": "".join(script.text)})
    for call in script.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": "toolu_" + call.id,
                "name": call.name,
                "input": msgspec.Raw(call.arguments.encode()),
            }
        )
    return _encode(_message(script, content, _STOP_REASONS[script.finish]))


def _describe(failure: Failure) -> str:
    if failure.kind == "invalid":
        return failure.detail
    if failure.kind == "context":
        window, requested = failure.window or 199999, failure.requested or 200000
        return f"prompt is too long: {requested} tokens > {window} maximum"
    if failure.kind == "notools":
        model = failure.model if ":" in failure.model else failure.model + ":latest"
        return f"registry.ollama.ai/library/{model} does not support tools"
    if failure.status == 401:
        return f"invalid x-api-key: {failure.detail}"
    if failure.status == 404:
        return f"model: {failure.model}"
    if failure.status == 429:
        return "Number of requests has exceeded your rate limit (dev model)."
    if failure.status == 529:
        return "Overloaded"
    if failure.status >= 500:
        return "Internal server error"
    return f"Dev model scripted failure ({failure.status})."


def error(failure: Failure) -> Reply:
    """The error reply, in Anthropic's ``{"type": "error", "error": {...}}`` shape."""
    status = failure.status
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    request_id = "req_" + uuid.uuid4().hex[:24]
    body = {
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(status, fallback), "message": _describe(failure)},
        "request_id": request_id,
    }
    headers = [(b"request-id", request_id.encode())]
    return Reply.json(status, _encode(body), headers, failure.retry_after)


def models(names: tuple[str, ...]) -> bytes:
    """The ``GET /v1/models`` list in Anthropic's shape."""
    data = [
        {"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"}
        for n in names
    ]
    first, last = (names[0], names[-1]) if names else (None, None)
    return _encode({"data": data, "has_more": False, "first_id": first, "last_id": last})
