"""The Anthropic Messages wire format: request parsing and response rendering."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, Literal

import msgspec

from .conversation import (
    Conversation,
    Message,
    Request,
    RequestError,
    Unit,
    count_words,
    read_request,
    require_dict,
    require_list,
    text_of,
)
from .player import Frame, Reply
from .script import Failure, Script

_encode = msgspec.json.Encoder().encode
#: extended thinking: the smallest budget, and the least top_p allowed with it
MIN_THINKING_BUDGET = 1024
MIN_TOP_P_THINKING = 0.95
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
#: per status: the error type and, for some, the message
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", ""),
    401: ("authentication_error", "invalid x-api-key: {detail}"),
    402: ("billing_error", ""),
    403: ("permission_error", ""),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", ""),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit (dev model)."),
    500: ("api_error", ""),
    504: ("timeout_error", ""),
    529: ("overloaded_error", "Overloaded"),
}


class _Thinking(msgspec.Struct):
    type: Literal["enabled", "disabled"]
    budget_tokens: int = 0


class _Request(Request):
    temperature: Unit | None = None
    thinking: _Thinking | None = None
    system: Any = None


def parse_request(body: dict[str, Any], api_key: str | None) -> Conversation:
    """Reduce a ``POST /v1/messages`` body to a :class:`Conversation`."""
    req, conv = read_request(body, _Request, api_key, _neutral)
    _check_thinking(req)
    conv.tools = [tool["name"] for tool in req.tools if isinstance(tool.get("name"), str)]
    conv.prompt_tokens += count_words(text_of(req.system))
    return conv


def _check_thinking(req: _Request) -> None:
    """Refuse, as the API does, sampling settings at odds with extended thinking (budget
    of at least 1024, under ``max_tokens``; no temperature but 1; ``top_p`` from 0.95)."""
    if req.thinking is None or req.thinking.type == "disabled":
        return
    budget = req.thinking.budget_tokens
    if budget < MIN_THINKING_BUDGET:
        raise RequestError(f"thinking.budget_tokens: must be at least {MIN_THINKING_BUDGET}")
    if req.max_tokens is not None and budget >= req.max_tokens:
        raise RequestError("max_tokens must be greater than thinking.budget_tokens")
    if req.temperature not in (None, 1):
        raise RequestError("temperature may only be set to 1 when thinking is enabled")
    if req.top_p is not None and req.top_p < MIN_TOP_P_THINKING:
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


def _deltas(
    index: int, kind: str, field: str, pieces: tuple[str, ...], token: bool = True
) -> Iterator[Frame]:
    delta = {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: 0}}
    head = _event(b"content_block_delta", _encode(delta)).removesuffix(b"0}}\n\n")
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


#: how a content block streams: delta type, field, pieces, and whether they are paced tokens
_Delta = tuple[str, str, tuple[str, ...], bool]


def _content(script: Script) -> Iterator[tuple[dict[str, Any], dict[str, Any], list[_Delta]]]:
    """Each content block: as its stream starts, whole, and the deltas that stream it."""
    if script.reasoning:
        thinking = {"type": "thinking", "thinking": "", "signature": ""}
        whole: dict[str, Any] = {**thinking, "thinking": "".join(script.reasoning)}
        whole["signature"] = script.signature
        signature = ("signature_delta", "signature", (script.signature,), False)
        yield thinking, whole, [("thinking_delta", "thinking", script.reasoning, True), signature]
    if script.text:
        text = {"type": "text", "text": ""}
        whole = {**text, "text": "".join(script.text)}
        yield text, whole, [("text_delta", "text", script.text, True)]
    for call in script.tool_calls:
        use = {"type": "tool_use", "id": "toolu_" + call.id, "name": call.name, "input": {}}
        whole = {**use, "input": msgspec.Raw(call.arguments.encode())}
        yield use, whole, [("input_json_delta", "partial_json", call.chunks, True)]


def stream(script: Script, conv: Conversation) -> Iterator[Frame]:
    """The SSE body: message_start, content blocks, message_delta, message_stop."""
    start = {"type": "message_start", "message": _message(script, [], None)}
    yield Frame(_event(b"message_start", _encode(start)))
    yield Frame(_event(b"ping", b'{"type":"ping"}'))
    for index, (block, _, deltas) in enumerate(_content(script)):
        opened = {"type": "content_block_start", "index": index, "content_block": block}
        yield Frame(_event(b"content_block_start", _encode(opened)), block["type"] == "tool_use")
        for kind, field, pieces, token in deltas:
            yield from _deltas(index, kind, field, pieces, token)
        stop = {"type": "content_block_stop", "index": index}
        yield Frame(_event(b"content_block_stop", _encode(stop)))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _STOP_REASONS[script.finish], "stop_sequence": None},
        "usage": {"input_tokens": script.input_tokens, "output_tokens": script.output_tokens},
    }
    yield Frame(_event(b"message_delta", _encode(delta)))
    yield Frame(_event(b"message_stop", b'{"type":"message_stop"}'))


def complete(script: Script, conv: Conversation) -> bytes:
    """The non-streaming ``message`` JSON body."""
    content = [whole for _, whole, _ in _content(script)]
    return _encode(_message(script, content, _STOP_REASONS[script.finish]))


def _describe(failure: Failure, template: str) -> str:
    if failure.kind in ("invalid", "notools"):
        return failure.detail
    if failure.kind == "context":
        window, requested = failure.window or 199999, failure.requested or 200000
        return f"prompt is too long: {requested} tokens > {window} maximum"
    if not template:
        server = failure.status >= 500
        template = "Internal server error" if server else "Dev model scripted failure ({status})."
    return template.format(detail=failure.detail, model=failure.model, status=failure.status)


def error(failure: Failure) -> Reply:
    """The error reply, in Anthropic's ``{"type": "error", "error": {...}}`` shape."""
    status = failure.status
    fallback = "api_error" if status >= 500 else "invalid_request_error"
    kind, template = _ERRORS.get(status, (fallback, ""))
    request_id = "req_" + uuid.uuid4().hex[:24]
    body = {
        "type": "error",
        "error": {"type": kind, "message": _describe(failure, template)},
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
