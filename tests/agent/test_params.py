"""A session's settings reach the provider request (as the dev model recorded it), and its
``max_steps`` bounds the turn's tool steps, on both wire formats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.agent.conftest import Harness, agent_settings_for
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import AssistantMessage, Fallback, GenerationParams, ToolCall
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings

PROVIDERS = ["dev", "dev-anthropic"]
TWO_TOOL_STEPS = '[[tool:echo {"text": "a"}]] [[tool:echo step=1 {"text": "b"}]]'


async def requests_for(devmodel_url: str, text: str) -> list[dict[str, Any]]:
    """The bodies the dev model received for the conversation of user text ``text``."""
    async with httpx.AsyncClient() as http:
        listing = (await http.get(f"{devmodel_url}/debug/requests")).json()
    return [r["body"] for r in listing["requests"] if text in str(r["body"]["messages"])]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sampling_settings_reach_the_request(
    harness: Harness, devmodel_url: str, provider: str
) -> None:
    params = GenerationParams(temperature=0.4, top_p=0.9, max_tokens=500)
    await harness.start(f"sampling-{provider}", provider=provider, tools=False, params=params)
    await harness.say(f"sampling-{provider}", f"sampling via {provider}", "t1")
    events = await harness.until_terminal(f"sampling-{provider}", "t1")
    assert events[-1].kind == "turn_completed", events[-1]
    (body,) = await requests_for(devmodel_url, f"sampling via {provider}")
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.4, 0.9, 500)
    assert "thinking" not in body


async def test_thinking_budget_reaches_the_anthropic_request(
    harness: Harness, devmodel_url: str
) -> None:
    params = GenerationParams(reasoning_budget_tokens=1024, max_tokens=3000, top_p=0.95)
    await harness.start("thinking", provider="dev-anthropic", tools=False, params=params)
    await harness.say("thinking", "think it over", "t1")
    events = await harness.until_terminal("thinking", "t1")
    assert events[-1].kind == "turn_completed", events[-1]
    (body,) = await requests_for(devmodel_url, "think it over")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert (body["max_tokens"], body["top_p"]) == (3000, 0.95) and "temperature" not in body


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_session_max_steps_lowers_the_step_limit(
    harness: Harness, devmodel_url: str, provider: str
) -> None:
    """The deployment allows 8 tool steps; the session asks for 1: one tool step, then
    a last step without tools."""
    session = f"steps-{provider}"
    await harness.start(session, provider=provider, params=GenerationParams(max_steps=1))
    await harness.say(session, f"{provider} {TWO_TOOL_STEPS}", "t1")
    events = await harness.until_terminal(session, "t1")
    assert events[-1].kind == "turn_completed", events[-1]
    assert [e.event.arguments for e in events if isinstance(e.event, ToolCall)] == [{"text": "a"}]
    (limit,) = [e.event for e in events if isinstance(e.event, Fallback)]
    assert (limit.fallback, limit.reason) == (
        "step_limit",
        "1 tool steps used; answering without tools",
    )
    final = [e.event for e in events if isinstance(e.event, AssistantMessage)][-1]
    assert final.step == 1 and final.text == "Tool echo is not available."
    bodies = await requests_for(devmodel_url, f"{provider} {TWO_TOOL_STEPS}")
    assert [bool(b.get("tools")) for b in bodies] == [True, False]


@pytest.fixture
async def one_step_agent(
    js_store: JetStreamEventStore, devmodel_url: str, tmp_path: object
) -> AsyncIterator[Harness]:
    """An agent whose deployment allows a single tool step per turn."""
    agent = AgentSettings(worker="test", retry_base_s=0.01, delta_window_s=0.005, max_steps=1)
    async with serve_agent(
        agent_settings_for(str(tmp_path)), js_store, devmodel_url=devmodel_url, agent=agent,
        env={}, ack_wait_s=5,
    ):  # fmt: skip
        yield Harness(js_store)


async def test_the_deployment_limit_wins_when_it_is_lower(one_step_agent: Harness) -> None:
    await one_step_agent.start("steps-capped", params=GenerationParams(max_steps=5))
    await one_step_agent.say("steps-capped", TWO_TOOL_STEPS, "t1")
    events = await one_step_agent.until_terminal("steps-capped", "t1")
    assert sum(isinstance(e.event, ToolCall) for e in events) == 1
    (limit,) = [e.event for e in events if isinstance(e.event, Fallback)]
    assert limit.fallback == "step_limit" and limit.reason.startswith("1 tool steps")
