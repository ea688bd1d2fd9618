"""Both adapters against the real dev model (services/devmodel), configured the way
``threadline up`` does it: THREADLINE_DEVMODEL_URL -> the "dev" and "dev-anthropic"
providers."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.providers.helpers import fail
from threadline.base.redact import Redactor
from threadline.events.conversation import AssistantTurn, ToolSpec, ToolTurn, UserTurn
from threadline.events.schema import ToolCallRef
from threadline.services.agent.providers import (
    ModelAdapter,
    ModelRequest,
    Secret,
    adapter_for,
    load_providers,
)
from threadline.services.agent.providers.parts import (
    FinishPart,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallEnd,
    UsagePart,
)
from threadline.services.devmodel import DevModelSettings, answer_for, serve, tool_answer

PROVIDERS = ["dev", "dev-anthropic"]


@pytest.fixture(scope="module")
async def devmodel_url() -> AsyncIterator[str]:
    async with serve(DevModelSettings.fast()) as url:
        yield url


@pytest.fixture
async def adapters(devmodel_url: str) -> AsyncIterator[dict[str, Any]]:
    registry = load_providers({"THREADLINE_DEVMODEL_URL": devmodel_url}, redactor=Redactor())
    made: dict[str, ModelAdapter] = {}

    def make(name: str, **overrides: Any) -> ModelAdapter:
        settings = dataclasses.replace(registry.get(name), **overrides)
        adapter = adapter_for(settings, redactor=Redactor())
        made[f"{name}{len(made)}"] = adapter
        return adapter

    yield {"make": make}
    for adapter in made.values():
        await adapter.aclose()


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


async def collect(adapter: ModelAdapter, request: ModelRequest) -> list[Any]:
    return [part async for part in adapter.stream(request)]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_echo(adapters: dict[str, Any], name: str) -> None:
    text = unique("hello there")
    parts = await collect(adapters["make"](name), ModelRequest(messages=(UserTurn(text=text),)))
    answer = "".join(p.text for p in parts if isinstance(p, TextDelta))
    assert answer == answer_for(text)
    assert isinstance(parts[-2], UsagePart) and parts[-2].usage.output_tokens > 0
    assert parts[-1] == FinishPart("stop")


@pytest.mark.parametrize("name", PROVIDERS)
async def test_tool_loop_with_reasoning(adapters: dict[str, Any], name: str) -> None:
    adapter = adapters["make"](name)
    tools = (ToolSpec(name="threadline__echo"), ToolSpec(name="other"))
    user = UserTurn(text=unique('[[reason:Use the tool.]] [[tool:echo {"x": 1, "s": "]]"}]]'))
    parts = await collect(adapter, ModelRequest(messages=(user,), tools=tools))
    reasoning = "".join(p.text for p in parts if isinstance(p, ReasoningDelta))
    assert reasoning == "Use the tool."
    (end,) = [p for p in parts if isinstance(p, ToolCallEnd)]
    assert (end.name, end.arguments, end.parse_error) == (
        "threadline__echo",
        {"x": 1, "s": "]]"},
        "",
    )
    assert parts[-1] == FinishPart("tool_calls")
    (reasoning_end,) = [p for p in parts if isinstance(p, ReasoningEnd)]
    if name == "dev-anthropic":
        assert reasoning_end.provider_data["signature"]
    step = AssistantTurn(
        reasoning=reasoning,
        tool_calls=(ToolCallRef(call_id=end.call_id, tool=end.name, arguments=end.arguments),),
        provider_data={name: reasoning_end.provider_data},
    )
    result = ToolTurn(call_id=end.call_id, tool=end.name, content="pong")
    request = ModelRequest(messages=(user, step, result), tools=tools, provider_data_key=name)
    parts = await collect(adapter, request)
    answer = "".join(p.text for p in parts if isinstance(p, TextDelta))
    # the model sees the result fenced as untrusted tool output
    fenced = f'<tool_output tool="threadline__echo" call_id="{end.call_id}" status="ok">\npong\n'
    assert answer == tool_answer([("threadline__echo", fenced + "</tool_output>")])
    assert parts[-1] == FinishPart("stop")


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize(
    ("directive", "kind", "retryable"),
    [
        ("[[fail:429 retry-after=1]]", "rate_limit", True),
        ("[[fail:500]]", "provider_error", True),
        ("[[fail:context]]", "context_too_long", False),
        ("[[drop:after=3]]", "network", True),
    ],
)
async def test_faults(
    adapters: dict[str, Any], name: str, directive: str, kind: str, retryable: bool
) -> None:
    request = ModelRequest(messages=(UserTurn(text=unique(f"one two three four {directive}")),))
    err = await fail(adapters["make"](name), request)
    assert (err.kind, err.retryable) == (kind, retryable)
    if kind == "rate_limit":
        assert err.retry_after_s == 1.0
        assert f"rate limited by {name}; retry after 1.0 s" in err.message


@pytest.mark.parametrize("name", PROVIDERS)
async def test_tools_unsupported(adapters: dict[str, Any], name: str) -> None:
    text = unique("[[fail:400-notools]]")
    request = ModelRequest(messages=(UserTurn(text=text),), tools=(ToolSpec(name="t"),))
    err = await fail(adapters["make"](name), request)
    assert (err.kind, err.tools_unsupported) == ("bad_request", True)
    # the same conversation without tools is answered
    parts = await collect(adapters["make"](name), ModelRequest(messages=(UserTurn(text=text),)))
    assert parts[-1] == FinishPart("stop")


@pytest.mark.parametrize("name", PROVIDERS)
async def test_stall_is_a_timeout(adapters: dict[str, Any], name: str) -> None:
    request = ModelRequest(messages=(UserTurn(text=unique("[[stall:5000]]")),))
    err = await fail(adapters["make"](name, timeout_s=0.3), request)
    assert (err.kind, err.retryable) == ("timeout", True)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_bad_key_and_missing_model(adapters: dict[str, Any], name: str) -> None:
    bad = adapters["make"](name, api_key=Secret("bad-key"), key_env="DEV_KEY")
    err = await fail(bad, ModelRequest(messages=(UserTurn(text="hi"),)))
    assert err.kind == "auth" and "check DEV_KEY" in err.message
    missing = ModelRequest(model="missing-model", messages=(UserTurn(text="hi"),))
    err = await fail(adapters["make"](name), missing)
    assert err.kind == "model_not_found" and "'missing-model'" in err.message


async def received(devmodel_url: str, text: str) -> dict[str, Any]:
    """The body of the request the dev model recorded for the conversation ``text``."""
    async with httpx.AsyncClient() as http:
        listing = (await http.get(f"{devmodel_url}/debug/requests")).json()
    bodies = [r["body"] for r in listing["requests"] if text in json.dumps(r["body"])]
    assert len(bodies) == 1, bodies
    body: dict[str, Any] = bodies[0]
    return body


@pytest.mark.parametrize("name", PROVIDERS)
async def test_settings_reach_the_wire(
    adapters: dict[str, Any], devmodel_url: str, name: str
) -> None:
    text = unique("settings")
    request = ModelRequest(
        messages=(UserTurn(text=text),), temperature=0.3, top_p=0.8, max_tokens=333
    )
    assert (await collect(adapters["make"](name), request))[-1] == FinishPart("stop")
    body = await received(devmodel_url, text)
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.3, 0.8, 333)
    assert "thinking" not in body


async def test_the_openai_wire_sends_no_thinking_budget(
    adapters: dict[str, Any], devmodel_url: str
) -> None:
    """Chat Completions has no budget: the gateway refuses one for OpenAI-wire providers,
    so only a fallback provider sees it, and leaves it out."""
    text = unique("budget")
    request = ModelRequest(messages=(UserTurn(text=text),), reasoning_budget_tokens=2048)
    assert (await collect(adapters["make"]("dev"), request))[-1] == FinishPart("stop")
    body = await received(devmodel_url, text)
    assert not {"thinking", "reasoning_effort", "reasoning"} & set(body)


async def test_thinking_budget_reaches_the_anthropic_wire(
    adapters: dict[str, Any], devmodel_url: str
) -> None:
    text = unique("think")
    request = ModelRequest(
        messages=(UserTurn(text=text),), reasoning_budget_tokens=1500, max_tokens=4000, top_p=0.96
    )
    assert (await collect(adapters["make"]("dev-anthropic"), request))[-1] == FinishPart("stop")
    body = await received(devmodel_url, text)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1500}
    assert (body["max_tokens"], body["top_p"]) == (4000, 0.96) and "temperature" not in body


async def test_thinking_budget_makes_room_in_the_providers_max_tokens(
    adapters: dict[str, Any], devmodel_url: str
) -> None:
    """The provider's configured temperature and max_tokens give way to thinking, and
    the dev model (which checks as the API does) accepts the request."""
    text = unique("room")
    adapter = adapters["make"]("dev-anthropic", max_tokens=1024, temperature=0.5)
    request = ModelRequest(messages=(UserTurn(text=text),), reasoning_budget_tokens=2048)
    assert (await collect(adapter, request))[-1] == FinishPart("stop")
    body = await received(devmodel_url, text)
    assert (body["max_tokens"], body["thinking"]["budget_tokens"]) == (2048 + 1024, 2048)
    assert "temperature" not in body


async def test_a_session_temperature_with_thinking_is_refused_by_the_api(
    adapters: dict[str, Any],
) -> None:
    """What the gateway's 422 prevents: the API refuses the pair (never dropped silently)."""
    request = ModelRequest(
        messages=(UserTurn(text=unique("hot")),), reasoning_budget_tokens=2048, temperature=0.5
    )
    err = await fail(adapters["make"]("dev-anthropic"), request)
    assert err.kind == "bad_request" and "temperature" in err.message
