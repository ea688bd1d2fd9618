"""The dev model through the real ``openai`` SDK: streaming, tools, reasoning, faults."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from threadline.services.devmodel import answer_for, tool_answer

ECHO_TOOL: Any = {
    "type": "function",
    "function": {"name": "threadline__echo", "parameters": {"type": "object"}},
}
ADD_TOOL: Any = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


@dataclass
class Streamed:
    text: str = ""
    reasoning: str = ""
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish: str | None = None
    usage: Any = None
    content_chunks: int = 0


async def collect(stream: Any) -> Streamed:
    out = Streamed()
    async for chunk in stream:
        if chunk.usage is not None:
            out.usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                out.text += delta.content
                out.content_chunks += 1
            out.reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for call in delta.tool_calls or []:
                slot = out.calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] += call.id or ""
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
            out.finish = choice.finish_reason or out.finish
    return out


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def test_plain_text_streams_the_echo_with_usage(oai: openai.AsyncOpenAI) -> None:
    prompt = "Hello there, dev model"
    stream = await oai.chat.completions.create(
        model="threadline-dev",
        messages=[{"role": "system", "content": "Be brief."}, *user(prompt)],
        stream=True,
        stream_options={"include_usage": True},
    )
    out = await collect(stream)
    assert out.text == answer_for(prompt) == "Echo: Hello there, dev model (threadline dev model)"
    assert out.finish == "stop"
    assert out.content_chunks == len(out.text.split())
    assert out.usage.completion_tokens == out.content_chunks
    assert out.usage.prompt_tokens == 6
    assert out.usage.total_tokens == 6 + out.content_chunks


async def test_words_directive_and_non_streaming(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(model="m", messages=user("[[words:25]]"))
    text = completion.choices[0].message.content
    assert text is not None and len(text.split()) == 25
    assert text == answer_for("[[words:25]]")
    assert completion.usage is not None and completion.usage.completion_tokens == 25
    assert completion.choices[0].finish_reason == "stop"


async def test_max_tokens_cuts_the_answer(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="m", messages=user("[[words:30]]"), max_completion_tokens=5, stream=True
    )
    out = await collect(stream)
    assert out.finish == "length"
    assert out.text == " ".join(answer_for("[[words:30]]").split()[:5]) + " "


async def test_one_tool_call_matches_a_prefixed_tool(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="m",
        messages=user('Please [[tool:echo {"text": "a fairly long argument value"}]]'),
        tools=[ECHO_TOOL],
        stream=True,
    )
    out = await collect(stream)
    assert out.finish == "tool_calls"
    assert out.text == ""
    assert list(out.calls) == [0]
    assert out.calls[0]["name"] == "threadline__echo"
    assert out.calls[0]["id"].startswith("call_")
    assert json.loads(out.calls[0]["arguments"]) == {"text": "a fairly long argument value"}


async def test_parallel_tool_calls_with_the_stream_helper(oai: openai.AsyncOpenAI) -> None:
    prompt = '[[tool:echo {"text": "one"}]] [[tool:add {"a": 1, "b": 2}]]'
    async with oai.chat.completions.stream(
        model="m", messages=user(prompt), tools=[ECHO_TOOL, ADD_TOOL]
    ) as stream:
        completion = await stream.get_final_completion()
    calls = completion.choices[0].message.tool_calls or []
    assert [call.function.name for call in calls] == ["threadline__echo", "add"]
    assert [json.loads(call.function.arguments) for call in calls] == [
        {"text": "one"},
        {"a": 1, "b": 2},
    ]
    assert len({call.id for call in calls}) == 2


async def test_three_step_tool_loop(oai: openai.AsyncOpenAI) -> None:
    prompt = (
        'Loop [[tool:echo {"n": 0}]] [[tool:echo step=1 {"n": 1}]] '
        '[[tool:echo step=2 {"n": 2}]] [[tool:add step=2 {"a": 2}]]'
    )
    messages: list[Any] = user(prompt)
    rounds: list[list[str]] = []
    while True:
        completion = await oai.chat.completions.create(
            model="m", messages=messages, tools=[ECHO_TOOL, ADD_TOOL]
        )
        message = completion.choices[0].message
        if not message.tool_calls:
            break
        assert completion.choices[0].finish_reason == "tool_calls"
        messages.append(message.model_dump(exclude_none=True))
        rounds.append([call.function.arguments for call in message.tool_calls])
        for call in message.tool_calls:
            result = f"result of {call.function.arguments}"
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    assert rounds == [['{"n":0}'], ['{"n":1}'], ['{"n":2}', '{"a":2}']]
    assert message.content == tool_answer(
        [("threadline__echo", 'result of {"n":2}'), ("add", 'result of {"a":2}')]
    )


async def test_tool_not_offered_answers_in_text(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="m", messages=user('[[tool:echo {"x": 1}]]'), tools=[ADD_TOOL]
    )
    assert completion.choices[0].message.content == "Tool echo is not available."
    assert completion.choices[0].message.tool_calls is None


async def test_reasoning_is_streamed_as_reasoning_content(oai: openai.AsyncOpenAI) -> None:
    prompt = "Why? [[reason:Let me think about this]]"
    stream = await oai.chat.completions.create(
        model="m", messages=user(prompt), stream=True, stream_options={"include_usage": True}
    )
    out = await collect(stream)
    assert out.reasoning == "Let me think about this"
    assert out.text == "Echo: Why? (threadline dev model)"
    assert out.usage.completion_tokens_details.reasoning_tokens == 5
    assert out.usage.completion_tokens == 5 + out.content_chunks


async def test_pace_directive_slows_the_stream(oai: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    stream = await oai.chat.completions.create(
        model="m", messages=user("[[pace:ttft=100,tps=100]] [[words:10]]"), stream=True
    )
    out = await collect(stream)
    assert out.content_chunks == 10
    assert time.monotonic() - started >= 0.1 + 9 * 0.01


@pytest.mark.parametrize(
    ("directive", "error", "code"),
    [
        ("[[fail:429 retry-after=7]]", openai.RateLimitError, "rate_limit_exceeded"),
        ("[[fail:404]]", openai.NotFoundError, "model_not_found"),
        ("[[fail:400]]", openai.BadRequestError, None),
        ("[[fail:401]]", openai.AuthenticationError, "invalid_api_key"),
        ("[[fail:500]]", openai.InternalServerError, None),
        ("[[fail:503]]", openai.InternalServerError, None),
        ("[[fail:context]]", openai.BadRequestError, "context_length_exceeded"),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_fail_directives_raise_the_sdk_error(
    oai: openai.AsyncOpenAI,
    directive: str,
    error: type[openai.APIStatusError],
    code: str | None,
    stream: bool,
) -> None:
    with pytest.raises(error) as caught:
        await oai.chat.completions.create(model="m", messages=user(directive), stream=stream)
    assert caught.value.code == code
    assert isinstance(caught.value.body, dict) and caught.value.body["message"]
    if "retry-after" in directive:
        assert caught.value.response.headers["retry-after"] == "7"


async def test_bad_key_and_missing_model(devmodel_url: str, oai: openai.AsyncOpenAI) -> None:
    async with openai.AsyncOpenAI(
        base_url=devmodel_url + "/v1", api_key="bad-key", max_retries=0
    ) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="m", messages=user("hi"))
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(model="missing-model", messages=user("hi"))
    assert "missing-model" in caught.value.message


async def test_notools_failure_is_ollamas_body(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model="llama3", messages=user("[[fail:400-notools]] hi"), tools=[ECHO_TOOL]
        )
    assert caught.value.body == {
        "message": "registry.ollama.ai/library/llama3:latest does not support tools",
        "type": "api_error",
        "param": None,
        "code": None,
    }
    completion = await oai.chat.completions.create(
        model="llama3", messages=user("[[fail:400-notools]] hi")
    )
    assert completion.choices[0].message.content == "Echo: hi (threadline dev model)"


async def test_times_fails_then_succeeds(devmodel_url: str, tag: str) -> None:
    messages = user(f"{tag} [[fail:429 retry-after=0.01 times=2]]")
    async with openai.AsyncOpenAI(
        base_url=devmodel_url + "/v1", api_key="dev", max_retries=2
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(model="m", messages=messages)
    assert raw.retries_taken == 2
    assert raw.parse().choices[0].message.content == f"Echo: {tag} (threadline dev model)"


async def test_times_counts_per_conversation(oai: openai.AsyncOpenAI, tag: str) -> None:
    messages = user(f"{tag} [[fail:500 times=1]]")
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model="m", messages=messages)
    other = user(f"{tag} other [[fail:500 times=1]]")
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model="m", messages=other)
    assert (await oai.chat.completions.create(model="m", messages=messages)).choices


async def test_drop_breaks_the_stream(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="m", messages=user("[[drop:after=3]] [[words:10]]"), stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert received == [f"{word} " for word in answer_for("[[words:3]]").split()]


async def test_drop_breaks_a_non_streaming_answer(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="m", messages=user("[[drop:after=2]] hi"))


@pytest.mark.parametrize("prompt", ["[[stall:5000]] hi", "[[stall:5000 after=2]] hi"])
async def test_stall_trips_the_client_timeout(devmodel_url: str, prompt: str) -> None:
    started = time.monotonic()
    async with openai.AsyncOpenAI(
        base_url=devmodel_url + "/v1", api_key="dev", max_retries=0, timeout=0.2
    ) as client:
        with pytest.raises(openai.APITimeoutError):  # on a loaded machine, maybe at create()
            stream = await client.chat.completions.create(
                model="m", messages=user(prompt), stream=True
            )
            await collect(stream)
    assert time.monotonic() - started < 4


async def test_models_list(oai: openai.AsyncOpenAI) -> None:
    models = await oai.models.list()
    assert [model.id for model in models.data] == ["threadline-dev"]
    assert (await oai.models.retrieve("threadline-dev")).id == "threadline-dev"
    with pytest.raises(openai.NotFoundError):
        await oai.models.retrieve("nope")


async def test_verbatim_answers_the_text_with_its_lines(oai: openai.AsyncOpenAI) -> None:
    text = "# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```py\nx  = 1\n```"
    stream = await oai.chat.completions.create(
        model="m", messages=user(f"[[verbatim]]\n{text}\n"), stream=True
    )
    out = await collect(stream)
    assert out.text == answer_for(f"[[verbatim]] {text}") == text
