"""The request bodies we encode are what the SDKs would send, byte for byte.

The adapters send their own msgspec-encoded body through the SDK's low-level ``post``;
here the same wire request also goes through the SDK's own ``create`` (its request
transformation and JSON encoding), to the same wire server, and the two requests must
match: body bytes, path and headers.
"""

from __future__ import annotations

from typing import Any

import pytest
from anthropic import AsyncAnthropic
from anthropic import omit as anthropic_omit
from openai import AsyncOpenAI, omit

from threadline.events.conversation import AssistantTurn, ToolSpec, ToolTurn, UserTurn
from threadline.events.schema import ToolCallRef
from threadline.services.agent.providers import ModelRequest
from threadline.services.agent.providers.anthropic_map import to_anthropic
from threadline.services.agent.providers.openai_map import to_openai
from threadline.services.agent.providers.sdk_adapter import client_options

#: text the encoders could disagree on: non-ASCII, escapes, control characters
TRICKY = 'héllo "quoted" \\ back\nnew\tline \x00\x01\x1f \u2028\u2029 ✓ \U0001f600 </script>'
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Oslo", "Zürich"]}, "n": {"minimum": 0.5}},
    "required": ["city"],
}
SAMPLE = ModelRequest(
    system=f"be brief {TRICKY}",
    messages=(
        UserTurn(text=TRICKY),
        AssistantTurn(
            text="checking",
            reasoning="hmm",
            tool_calls=(ToolCallRef(call_id="c1", tool="weather", arguments={"city": "Zürich"}),),
            provider_data={"anthropic": {"signature": "sig=="}},
        ),
        ToolTurn(call_id="c1", tool="weather", content=f"sunny {TRICKY}"),
        AssistantTurn(text=""),
        UserTurn(text="and tomorrow?"),
    ),
    tools=(ToolSpec(name="weather", description="the weather", parameters=SCHEMA),),
    temperature=0.7,
    max_tokens=321,
    top_p=0.9,
    provider_data_key="anthropic",
)


async def send_both(
    wire: Any, run: Any, adapter: Any, request: ModelRequest, sdk_call: Any, stop: list[bytes]
) -> None:
    """``request`` through ``adapter``, then ``sdk_call()``; the two requests must match."""
    wire.reply(wire.sse_reply(stop), wire.sse_reply(stop))
    await run(adapter.stream(request))
    async for _ in await sdk_call():
        pass
    ours, sdk = wire.requests[-2:]
    assert ours.body == sdk.body
    assert (ours.method, ours.path, ours.headers) == (sdk.method, sdk.path, sdk.headers)


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
async def test_openai_body_is_the_sdks(wire: Any, make_adapter: Any, run: Any, param: str) -> None:
    adapter = make_adapter("openai", max_tokens_param=param, headers={"X-Team": "a"})
    w = to_openai(SAMPLE, adapter.settings)
    client = AsyncOpenAI(**client_options(adapter.settings, None))

    def sdk_call() -> Any:
        return client.chat.completions.create(
            model=w.model,
            messages=w.messages,
            stream=True,
            stream_options={"include_usage": True},
            tools=w.tools or omit,
            temperature=w.temperature if w.temperature is not None else omit,
            top_p=w.top_p if w.top_p is not None else omit,
            max_tokens=w.max_tokens if w.max_tokens_param == "max_tokens" else omit,
            max_completion_tokens=(
                w.max_tokens if w.max_tokens_param == "max_completion_tokens" else omit
            ),
            extra_headers={"OpenAI-Organization": omit, "OpenAI-Project": omit},
        )

    stop = wire.openai_sse([wire.delta(finish="stop")])
    try:
        await send_both(wire, run, adapter, SAMPLE, sdk_call, stop)
    finally:
        await client.close()
    assert wire.last.json()[param] == 321


@pytest.mark.parametrize("thinking", [None, 2048])
async def test_anthropic_body_is_the_sdks(
    wire: Any, make_adapter: Any, run: Any, thinking: int | None
) -> None:
    adapter = make_adapter("anthropic")
    request = SAMPLE
    if thinking:
        request = ModelRequest(
            messages=SAMPLE.messages, tools=SAMPLE.tools, top_p=0.97,
            reasoning_budget_tokens=thinking, provider_data_key="anthropic",
        )  # fmt: skip
    w = to_anthropic(request, adapter.settings)
    client = AsyncAnthropic(**client_options(adapter.settings, None))
    o = anthropic_omit

    def sdk_call() -> Any:
        return client.messages.create(
            model=w.model, max_tokens=w.max_tokens, messages=w.messages,
            system=w.system or o, tools=w.tools or o, thinking=w.thinking or o,
            stream=True, extra_body=w.sampling() or None,
        )  # fmt: skip

    stop = wire.anthropic_sse([{"type": "message_stop"}])
    try:
        await send_both(wire, run, adapter, request, sdk_call, stop)
    finally:
        await client.close()
    body = wire.last.json()
    assert ("thinking" in body) == bool(thinking)
    assert list(body)[-1] == "top_p"  # sampling last, where the SDK's extra_body puts it
