"""The dev model through the real ``anthropic`` SDK: streaming, tools, thinking, faults."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx2
import pytest

from threadline.services.devmodel import answer_for, tool_answer

ECHO_TOOL: Any = {"name": "threadline__echo", "input_schema": {"type": "object"}}
ADD_TOOL: Any = {"name": "add", "input_schema": {"type": "object"}}


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def test_plain_text_streams_the_echo_with_usage(anth: anthropic.AsyncAnthropic) -> None:
    prompt = "Hello there, dev model"
    deltas: list[str] = []
    async with anth.messages.stream(
        model="threadline-dev", max_tokens=100, system="Be brief.", messages=user(prompt)
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                deltas.append(event.delta.text)
        message = await stream.get_final_message()
    assert "".join(deltas) == answer_for(prompt)
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == answer_for(prompt)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 6
    assert message.usage.output_tokens == len(deltas)


async def test_raw_event_sequence(anth: anthropic.AsyncAnthropic) -> None:
    stream = await anth.messages.create(
        model="m", max_tokens=100, messages=user("[[words:3]]"), stream=True
    )
    kinds = [event.type async for event in stream]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_non_streaming_and_max_tokens(anth: anthropic.AsyncAnthropic) -> None:
    message = await anth.messages.create(model="m", max_tokens=4, messages=user("[[words:9]]"))
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == "lorem ipsum dolor sit "
    assert message.usage.output_tokens == 4


async def test_one_tool_call_matches_a_prefixed_tool(anth: anthropic.AsyncAnthropic) -> None:
    prompt = 'Please [[tool:echo {"text": "a fairly long argument value"}]]'
    async with anth.messages.stream(
        model="m", max_tokens=100, messages=user(prompt), tools=[ECHO_TOOL]
    ) as stream:
        message = await stream.get_final_message()
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use"
    assert block.name == "threadline__echo"
    assert block.id.startswith("toolu_")
    assert block.input == {"text": "a fairly long argument value"}


async def test_parallel_tool_calls(anth: anthropic.AsyncAnthropic) -> None:
    prompt = '[[tool:echo {"text": "one"}]] [[tool:add {"a": 1, "b": 2}]]'
    stream = await anth.messages.create(
        model="m", max_tokens=100, messages=user(prompt), tools=[ECHO_TOOL, ADD_TOOL], stream=True
    )
    partial: dict[int, str] = {}
    names: dict[int, str] = {}
    async for event in stream:
        if event.type == "content_block_start" and event.content_block.type == "tool_use":
            names[event.index] = event.content_block.name
        elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
            partial[event.index] = partial.get(event.index, "") + event.delta.partial_json
    assert names == {0: "threadline__echo", 1: "add"}
    assert partial == {0: '{"text":"one"}', 1: '{"a":1,"b":2}'}


async def test_three_step_tool_loop(anth: anthropic.AsyncAnthropic) -> None:
    prompt = (
        'Loop [[tool:echo {"n": 0}]] [[tool:echo step=1 {"n": 1}]] '
        '[[tool:echo step=2 {"n": 2}]] [[tool:add step=2 {"a": 2}]]'
    )
    messages: list[Any] = user(prompt)
    rounds: list[list[Any]] = []
    while True:
        async with anth.messages.stream(
            model="m", max_tokens=200, messages=messages, tools=[ECHO_TOOL, ADD_TOOL]
        ) as stream:
            message = await stream.get_final_message()
        uses = [block for block in message.content if block.type == "tool_use"]
        if not uses:
            break
        messages.append({"role": "assistant", "content": [b.to_dict() for b in message.content]})
        rounds.append([use.input for use in uses])
        results = [
            {"type": "tool_result", "tool_use_id": use.id, "content": f"got {use.input}"}
            for use in uses
        ]
        messages.append({"role": "user", "content": results})
    assert rounds == [[{"n": 0}], [{"n": 1}], [{"n": 2}, {"a": 2}]]
    assert message.content[0].text == tool_answer(
        [("threadline__echo", "got {'n': 2}"), ("add", "got {'a': 2}")]
    )


async def test_tool_not_offered_answers_in_text(anth: anthropic.AsyncAnthropic) -> None:
    message = await anth.messages.create(
        model="m", max_tokens=100, messages=user('[[tool:echo {"x": 1}]]')
    )
    assert message.content[0].text == "Tool echo is not available."
    assert message.stop_reason == "end_turn"


async def test_reasoning_is_a_signed_thinking_block(anth: anthropic.AsyncAnthropic) -> None:
    prompt = "Why? [[reason:Let me think about this]]"
    async with anth.messages.stream(model="m", max_tokens=100, messages=user(prompt)) as stream:
        message = await stream.get_final_message()
    thinking, text = message.content
    assert thinking.type == "thinking" and text.type == "text"
    assert thinking.thinking == "Let me think about this"
    assert thinking.signature
    assert text.text == "Echo: Why? (threadline dev model)"
    assert message.usage.output_tokens == 5 + len(text.text.split())
    again = await anth.messages.create(model="m", max_tokens=100, messages=user(prompt))
    assert again.content[0].signature == thinking.signature


@pytest.mark.parametrize(
    ("directive", "error", "kind"),
    [
        ("[[fail:429 retry-after=7]]", anthropic.RateLimitError, "rate_limit_error"),
        ("[[fail:404]]", anthropic.NotFoundError, "not_found_error"),
        ("[[fail:400]]", anthropic.BadRequestError, "invalid_request_error"),
        ("[[fail:401]]", anthropic.AuthenticationError, "authentication_error"),
        ("[[fail:500]]", anthropic.InternalServerError, "api_error"),
        ("[[fail:529]]", anthropic.OverloadedError, "overloaded_error"),
        ("[[fail:context]]", anthropic.BadRequestError, "invalid_request_error"),
        ("[[fail:400-notools]]", anthropic.BadRequestError, "invalid_request_error"),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_fail_directives_raise_the_sdk_error(
    anth: anthropic.AsyncAnthropic,
    directive: str,
    error: type[anthropic.APIStatusError],
    kind: str,
    stream: bool,
) -> None:
    with pytest.raises(error) as caught:
        await anth.messages.create(
            model="m", max_tokens=10, messages=user(directive), tools=[ADD_TOOL], stream=stream
        )
    assert caught.value.type == kind
    assert caught.value.api_message
    assert caught.value.request_id
    if "context" in directive:
        assert "prompt is too long" in caught.value.api_message
    if "retry-after" in directive:
        assert caught.value.response.headers["retry-after"] == "7"


async def test_bad_key_and_missing_model(devmodel_url: str, anth: anthropic.AsyncAnthropic) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=devmodel_url, api_key="bad-key", max_retries=0
    ) as bad:
        with pytest.raises(anthropic.AuthenticationError):
            await bad.messages.create(model="m", max_tokens=10, messages=user("hi"))
    with pytest.raises(anthropic.NotFoundError) as caught:
        await anth.messages.create(model="missing-model", max_tokens=10, messages=user("hi"))
    assert caught.value.api_message == "model: missing-model"


async def test_times_fails_then_succeeds(devmodel_url: str, tag: str) -> None:
    messages = user(f"{tag} [[fail:529 retry-after=0.01 times=2]]")
    async with anthropic.AsyncAnthropic(base_url=devmodel_url, api_key="dev", max_retries=2) as c:
        raw = await c.messages.with_raw_response.create(model="m", max_tokens=50, messages=messages)
    assert raw.retries_taken == 2
    assert (await raw.parse()).content[0].text == f"Echo: {tag} (threadline dev model)"


async def test_drop_breaks_the_stream(anth: anthropic.AsyncAnthropic) -> None:
    stream = await anth.messages.create(
        model="m", max_tokens=100, messages=user("[[drop:after=3]] [[words:10]]"), stream=True
    )
    received: list[str] = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                received.append(event.delta.text)
    assert received == ["lorem ", "ipsum ", "dolor "]


async def test_drop_after_the_last_token_still_breaks(anth: anthropic.AsyncAnthropic) -> None:
    stream = await anth.messages.create(
        model="m", max_tokens=100, messages=user("[[drop:after=99]] [[words:2]]"), stream=True
    )
    kinds: list[str] = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        async for event in stream:
            kinds.append(event.type)
    assert "message_stop" not in kinds


@pytest.mark.parametrize("prompt", ["[[stall:5000]] hi", "[[stall:5000 after=2]] hi"])
async def test_stall_trips_the_client_timeout(devmodel_url: str, prompt: str) -> None:
    started = time.monotonic()
    async with anthropic.AsyncAnthropic(
        base_url=devmodel_url, api_key="dev", max_retries=0, timeout=0.2
    ) as client:
        with pytest.raises((anthropic.APITimeoutError, httpx2.ReadTimeout)):
            stream = await client.messages.create(  # on a loaded machine, maybe here already
                model="m", max_tokens=10, messages=user(prompt), stream=True
            )
            async for _ in stream:
                pass
        with pytest.raises(anthropic.APITimeoutError):
            await client.messages.create(model="m", max_tokens=10, messages=user(prompt))
    assert time.monotonic() - started < 4


async def test_models_list(anth: anthropic.AsyncAnthropic) -> None:
    page = await anth.models.list()
    assert [model.id for model in page.data] == ["threadline-dev"]
    assert (await anth.models.retrieve("threadline-dev")).display_name == "threadline-dev"
