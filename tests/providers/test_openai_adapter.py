"""The OpenAI Chat Completions adapter against a scripted wire server (real SDK, real HTTP)."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx2
import openai
import pytest

from tests.providers.helpers import (
    ASK,
    TRANSPORTS,
    HttpErrorCase,
    expect_http_error,
    fail,
    http_error_cases,
)
from threadline.events.conversation import ToolSpec, UserTurn
from threadline.events.schema import Usage
from threadline.services.agent.providers import (
    ModelRequest,
)
from threadline.services.agent.providers.parts import (
    FinishPart,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallEnd,
    ToolCallStart,
    UsagePart,
)

USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 7,
    "total_tokens": 18,
    "completion_tokens_details": {"reasoning_tokens": 3},
    "prompt_tokens_details": {"cached_tokens": 5},
}


@TRANSPORTS
async def test_plain_text_with_usage(
    wire: Any, make_adapter: Any, run: Any, transport: str
) -> None:
    d = wire.delta
    wire.reply(
        wire.sse_reply(
            wire.openai_sse(
                [
                    d(role="assistant", content=""),
                    d(content="Hel"),
                    d(content="lo"),
                    d(finish="stop"),
                    {"choices": [], "usage": USAGE},
                ]
            )
        )
    )
    adapter = make_adapter(
        "openai", transport=transport, max_tokens_param="max_completion_tokens", temperature=0.1
    )
    parts = await run(adapter.stream(ASK))
    assert parts == [
        TextDelta("Hel"),
        TextDelta("lo"),
        UsagePart(
            Usage(input_tokens=11, output_tokens=7, reasoning_tokens=3, cached_input_tokens=5)
        ),
        FinishPart("stop"),
    ]
    seen = wire.last
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == "Bearer sk-test-SECRET123"
    assert "openai-organization" not in seen.headers
    body = seen.json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "test-model"
    assert body["max_completion_tokens"] == 4096 and "max_tokens" not in body
    assert body["temperature"] == 0.1
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hello"},
    ]
    assert "tools" not in body


async def test_parallel_tool_calls_with_streamed_arguments(
    wire: Any, make_adapter: Any, run: Any
) -> None:
    d = wire.delta

    def call(index: int, args: str, **first: Any) -> dict[str, Any]:
        fn: dict[str, Any] = {"arguments": args}
        if "name" in first:
            fn["name"] = first.pop("name")
        return {"index": index, "function": fn, **first}

    wire.reply(
        wire.sse_reply(
            wire.openai_sse(
                [
                    d(role="assistant", content="Checking."),
                    d(tool_calls=[call(0, "", id="call_w", type="function", name="weather")]),
                    d(tool_calls=[call(1, '{"tz":', id="call_t", type="function", name="time")]),
                    d(tool_calls=[call(0, '{"city": "Os')]),
                    d(tool_calls=[call(1, ' "UTC"}'), call(0, 'lo"}')]),
                    d(finish="tool_calls"),
                ]
            )
        )
    )
    tools = (ToolSpec(name="weather"), ToolSpec(name="time", description="Now"))
    parts = await run(
        make_adapter("openai").stream(ModelRequest(messages=ASK.messages, tools=tools))
    )
    assert parts == [
        TextDelta("Checking."),
        ToolCallStart(0, "call_w", "weather"),
        ToolCallStart(1, "call_t", "time"),
        ToolCallEnd("call_w", "weather", {"city": "Oslo"}, '{"city": "Oslo"}'),
        ToolCallEnd("call_t", "time", {"tz": "UTC"}, '{"tz": "UTC"}'),
        FinishPart("tool_calls"),
    ]
    body = wire.last.json()
    assert body["tools"][1] == {
        "type": "function",
        "function": {"name": "time", "description": "Now", "parameters": {"type": "object"}},
    }
    assert "Tool results are delivered inside <tool_output>" in body["messages"][0]["content"]
    assert body["max_tokens"] == 4096


async def test_reasoning_deltas_and_invalid_arguments(
    wire: Any, make_adapter: Any, run: Any
) -> None:
    d = wire.delta
    broken = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a": '}}
    wire.reply(
        wire.sse_reply(
            wire.openai_sse(
                [
                    d(reasoning_content="Think"),
                    d(reasoning="ing."),
                    d(content="Done"),
                    d(tool_calls=[broken]),
                    d(finish="stop"),  # Gemini/Ollama style: "stop" despite tool calls
                ],
                done=False,
            )
        )
    )
    parts = await run(make_adapter("gemini").stream(ASK))
    assert parts[:4] == [
        ReasoningDelta("Think"),
        ReasoningDelta("ing."),
        ReasoningEnd(),
        TextDelta("Done"),
    ]
    end = parts[-2]
    assert isinstance(end, ToolCallEnd)
    assert end.arguments == {} and end.raw_arguments == '{"a": ' and end.parse_error
    assert parts[-1] == FinishPart("tool_calls")


@pytest.mark.parametrize(
    ("wire_reason", "reason"),
    [("length", "length"), ("content_filter", "content_filter"), ("function_call", "tool_calls")],
)
async def test_finish_reasons(
    wire: Any, make_adapter: Any, run: Any, wire_reason: str, reason: str
) -> None:
    wire.reply(
        wire.sse_reply(wire.openai_sse([wire.delta(content="x"), wire.delta(finish=wire_reason)]))
    )
    parts = await run(make_adapter("openai").stream(ASK))
    assert parts[-1] == FinishPart(reason)  # type: ignore[arg-type]


def error_body(message: str, code: str | None = None, type_: str = "invalid_request_error") -> Any:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@pytest.mark.parametrize(
    "case",
    http_error_cases(
        (401, error_body("Incorrect API key"), {}, "auth", False, None, "check OPENAI_API_KEY"),
        (403, error_body("no access"), {}, "auth", False, None, "refused access"),
        (404, error_body("The model `x` does not exist", "model_not_found"), {}, "model_not_found",
         False, None, "model 'test-model' was not found"),
        (429, error_body("slow down", "rate_limit_exceeded"), {"retry-after": "2"}, "rate_limit",
         True, 2.0, "rate limited by openai; retry after 2.0 s"),
        (429, error_body("slow down"), {"retry-after-ms": "1500", "retry-after": "9"}, "rate_limit",
         True, 1.5, "retry after 1.5 s"),
        (429, error_body("You exceeded your current quota", "insufficient_quota"), {}, "rate_limit",
         False, None, "quota exhausted"),
        (400, error_body("This model's maximum context length is 128000 tokens",
                         "context_length_exceeded"), {}, "context_too_long", False, None,
         "too long"),
        (400, error_body("bad temperature"), {}, "bad_request", False, None, "bad temperature"),
        (422, {"detail": "nope"}, {}, "bad_request", False, None, "HTTP 422"),
        (500, error_body("oops", type_="server_error"), {}, "provider_error", True, None,
         "HTTP 500"),
        (503, "<html>unavailable</html>", {"retry-after": "3"}, "provider_error", True, 3.0,
         "HTTP 503"),
        (504, "gateway", {}, "timeout", True, None, "timed out"),
    ),
)  # fmt: skip
@TRANSPORTS
async def test_http_errors(
    wire: Any, make_adapter: Any, case: HttpErrorCase, transport: str
) -> None:
    err = await expect_http_error(wire, make_adapter("openai", transport=transport), case)
    assert err.provider == "openai"
    assert not err.tools_unsupported


async def test_ollama_tools_unsupported(wire: Any, make_adapter: Any) -> None:
    message = "registry.ollama.ai/library/gemma:2b does not support tools"
    wire.reply(wire.json_reply(400, error_body(message, type_="api_error")))
    adapter = make_adapter("openai", name="ollama", key=None)
    err = await fail(adapter, ModelRequest(messages=ASK.messages, tools=(ToolSpec(name="t"),)))
    assert err.kind == "bad_request" and err.tools_unsupported and not err.retryable
    assert "does not support tools" in err.message and "'test-model'" in err.message
    assert wire.last.headers["authorization"] == "Bearer threadline-no-key"
    # Ollama's native error shape: {"error": "<text>"}
    wire.reply(wire.json_reply(400, {"error": message}))
    assert (await fail(adapter)).tools_unsupported


async def test_error_inside_the_stream(wire: Any, make_adapter: Any) -> None:
    chunks = wire.openai_sse([wire.delta(content="par")], done=False)
    chunks.append(b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n')
    wire.reply(wire.sse_reply(chunks))
    err = await fail(make_adapter("openrouter"))
    assert (err.kind, err.retryable, err.status) == ("provider_error", True, None)


@TRANSPORTS
async def test_dropped_stream_is_a_network_error(
    wire: Any, make_adapter: Any, transport: str
) -> None:
    wire.reply(wire.sse_reply(wire.openai_sse([wire.delta(content="par")], done=False), drop=True))
    err = await fail(make_adapter("openai", transport=transport))
    assert (err.kind, err.retryable) == ("network", True)
    assert "the stream from OpenAI broke" in err.message


async def test_stream_without_a_finish_is_a_network_error(wire: Any, make_adapter: Any) -> None:
    wire.reply(wire.sse_reply(wire.openai_sse([wire.delta(content="par")])))
    err = await fail(make_adapter("openai"))
    assert (err.kind, err.retryable) == ("network", True)
    assert "ended before the model finished" in err.message


@TRANSPORTS
async def test_read_timeout(wire: Any, make_adapter: Any, transport: str) -> None:
    wire.reply(wire.sse_reply(wire.openai_sse([wire.delta(content="x")], done=False), stall=True))
    err = await fail(make_adapter("openai", transport=transport, timeout_s=0.3))
    assert (err.kind, err.retryable) == ("timeout", True)
    assert "0.3 s" in err.message


@TRANSPORTS
async def test_connection_refused(wire: Any, make_adapter: Any, transport: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = make_adapter("openai", transport=transport, base_url=f"http://127.0.0.1:{port}/v1")
    err = await fail(adapter)
    assert (err.kind, err.retryable) == ("network", True)
    assert "could not connect to OpenAI" in err.message and str(port) not in err.message


@TRANSPORTS
async def test_closing_early_cancels_cleanly(wire: Any, make_adapter: Any, transport: str) -> None:
    wire.reply(wire.sse_reply(wire.openai_sse([wire.delta(content="x")], done=False), stall=True))
    stream = make_adapter("openai", transport=transport).stream(ASK)
    assert await anext(stream) == TextDelta("x")
    await stream.aclose()


async def test_request_json_is_what_the_sdk_sent(wire: Any, make_adapter: Any, run: Any) -> None:
    wire.reply(wire.sse_reply(wire.openai_sse([wire.delta(finish="stop")])))
    adapter = make_adapter("openai", headers={"X-Team": "a", "OpenAI-Project": "p1"})
    assert await run(adapter.stream(ASK)) == [FinishPart("stop")]
    seen = wire.last
    assert seen.headers["x-team"] == "a"
    assert seen.headers["openai-project"] == "p1"
    assert "openai-organization" not in seen.headers
    assert json.loads(seen.body)["max_tokens"] == 4096


@TRANSPORTS
async def test_every_request_is_the_one_the_sdks_post_sends(
    wire: Any, make_adapter: Any, run: Any, transport: str
) -> None:
    """The adapter builds its request once through the SDK and reuses it (a tenth of
    the agent's CPU per turn went to the SDK's request building): each request carries
    the headers the SDK's own ``post`` sends (the key, the SDK's, the configured ones)
    and its own body."""
    adapter = make_adapter("openai", transport=transport, headers={"X-Team": "a"})
    for text in ("first", "second"):
        wire.reply(wire.sse_reply(wire.openai_sse([wire.delta(finish="stop")])))
        ask = ModelRequest(model="m", messages=(UserTurn(text=text),))
        assert await run(adapter.stream(ask)) == [FinishPart("stop")]
    by_adapter = wire.requests[-2:]
    wire.reply(wire.sse_reply(wire.openai_sse([wire.delta(finish="stop")])))
    sdk: Any = adapter._client  # the same client, through its own request path
    omit_org = {"OpenAI-Organization": openai.omit, "OpenAI-Project": openai.omit}
    response = await sdk.post(
        "/chat/completions", cast_to=httpx2.Response, content=b"{}", stream=True,
        options={"headers": omit_org, "security": {"bearer_auth": True}},
    )  # fmt: skip
    await response.aclose()
    by_sdk = wire.last
    assert [json.loads(r.body)["messages"][-1]["content"] for r in by_adapter] == [
        "first",
        "second",
    ]
    for seen in by_adapter:
        assert seen.path == by_sdk.path
        mine = {k: v for k, v in seen.headers.items() if k != "content-length"}
        assert mine == {k: v for k, v in by_sdk.headers.items() if k != "content-length"}
        assert int(seen.headers["content-length"]) == len(seen.body)
    assert by_sdk.headers["authorization"] == "Bearer sk-test-SECRET123"
    assert by_sdk.headers["x-team"] == "a"


@TRANSPORTS
async def test_a_plain_json_answer_is_the_providers_bad_answer(
    wire: Any, make_adapter: Any, transport: str
) -> None:
    """Issue 12 #17: not a dropped connection (which the agent retries) but a server that
    does not stream, which it will not do on a retry either."""
    completion = {"id": "c", "object": "chat.completion", "choices": [{"index": 0}]}
    wire.reply(wire.json_reply(200, completion))
    err = await fail(make_adapter("openai", transport=transport))
    assert (err.kind, err.retryable, err.status) == ("provider_error", False, None)
    assert "not an event stream" in err.message and "application/json" in err.message
    wire.reply(wire.json_reply(200, {"error": {"message": "no streaming here"}}))
    assert "no streaming here" in (await fail(make_adapter("openai", transport=transport))).message


async def test_undecodable_chunk_is_a_malformed_stream(wire: Any, make_adapter: Any) -> None:
    chunks = wire.openai_sse([wire.delta(content="par")], done=False)
    chunks.append(b'data: {"choices": [{"index": "zero"}]}\n\n')
    wire.reply(wire.sse_reply(chunks))
    err = await fail(make_adapter("openai"))
    assert (err.kind, err.retryable) == ("provider_error", True)
    assert "malformed stream" in err.message


async def test_events_after_done_are_not_read(wire: Any, make_adapter: Any, run: Any) -> None:
    chunks = wire.openai_sse([wire.delta(content="a"), wire.delta(finish="stop")])
    chunks.append(b"data: {not json, and never decoded}\n\n")
    wire.reply(wire.sse_reply(chunks))
    parts = await run(make_adapter("openai").stream(ASK))
    assert parts == [TextDelta("a"), FinishPart("stop")]
