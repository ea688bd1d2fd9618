"""Provider faults, fallbacks, limits, tools and stops, each recorded as events."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.conftest import Harness
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import (
    AssistantMessage,
    CancelRequested,
    Fallback,
    SessionStarted,
    ToolCall,
    ToolResult,
    TurnCancelled,
    TurnFailed,
    TurnStarted,
)
from threadline.events.store import NewEvent, Recorded
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings


def of(records: list[Recorded], kind: type) -> list:  # type: ignore[type-arg]
    return [r.event for r in records if isinstance(r.event, kind)]


@pytest.fixture
async def tight(
    js_store: JetStreamEventStore, devmodel_url: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    """An agent with short provider timeouts, a 2-step limit and one broken MCP server."""
    settings = Settings(
        data_dir=str(tmp_path),
        providers={"dev": {"timeout_s": 0.5}, "dev-anthropic": {"timeout_s": 0.5}},
        mcp_servers={
            "threadline": {
                "transport": "stdio",
                "command": [sys.executable, "-m", "threadline.services.mcpserver"],
                "call_timeout_s": 10,
            },
            "broken": {"transport": "stdio", "command": ["/nonexistent/mcp-server"]},
        },
    )
    agent = AgentSettings(worker="t", retry_base_s=0.01, max_steps=2, delta_window_s=0.005)
    async with serve_agent(
        settings, js_store, devmodel_url=devmodel_url, agent=agent, env={}, ack_wait_s=5
    ):
        yield Harness(js_store)


async def turn(h: Harness, session: str, text: str, **start: object) -> list[Recorded]:
    await h.start(session, **start)  # type: ignore[arg-type]
    await h.say(session, text, "t1")
    return await h.until_terminal(session, "t1")


async def test_rate_limit_is_retried_honouring_retry_after(tight: Harness) -> None:
    events = await turn(tight, "rl", "[[fail:429 retry-after=0.05 times=2]] hi", tools=False)
    retries = of(events, Fallback)
    assert [f.fallback for f in retries] == ["retry", "retry"]
    assert "rate" in retries[0].reason.lower()
    assert events[-1].kind == "turn_completed"


async def test_server_error_then_success(tight: Harness) -> None:
    events = await turn(tight, "e500", "[[fail:500 times=1]] hi", tools=False)
    assert [f.fallback for f in of(events, Fallback)] == ["retry"]
    assert events[-1].kind == "turn_completed"


@pytest.mark.parametrize(
    ("directive", "kind"),
    [
        ("[[fail:401]]", "auth"),
        ("[[fail:context]]", "context_too_long"),
        ("[[fail:400]]", "bad_request"),
    ],
)
async def test_permanent_errors_fail_with_their_kind(
    tight: Harness, directive: str, kind: str
) -> None:
    events = await turn(tight, f"perm{kind}", f"{directive} hi", tools=False)
    failed = events[-1].event
    assert isinstance(failed, TurnFailed) and failed.error == kind
    assert of(events, Fallback) == []  # nothing worth retrying


async def test_ollama_without_tool_support_falls_back_to_no_tools(tight: Harness) -> None:
    events = await turn(tight, "ollama", "[[fail:400-notools]] hi")
    fallbacks = of(events, Fallback)
    assert [f.fallback for f in fallbacks] == ["tools_disabled"]
    assert "does not support tools" in fallbacks[0].reason
    assert events[-1].kind == "turn_completed"


async def test_dropped_stream_restarts_the_turn_then_fails_as_network(tight: Harness) -> None:
    events = await turn(tight, "drop", "[[drop:after=2]] [[words:20]]", tools=False)
    attempts = [e.attempt for e in of(events, TurnStarted)]
    assert attempts == [1, 2, 3]
    assert [f.fallback for f in of(events, Fallback)] == ["retry", "retry"]
    failed = events[-1].event
    assert isinstance(failed, TurnFailed) and failed.error == "network"


async def test_stall_past_the_timeout_fails_as_timeout(tight: Harness) -> None:
    events = await turn(tight, "stall", "[[stall:3000]] hi", tools=False)
    failed = events[-1].event
    assert isinstance(failed, TurnFailed) and failed.error == "timeout"
    assert len(of(events, Fallback)) == 3  # every retry is on record


async def test_anthropic_wire_with_a_tool(tight: Harness) -> None:
    events = await turn(
        tight, "anth", '[[reason:thinking]] [[tool:add {"a": 2, "b": 3}]]', provider="dev-anthropic"
    )
    results = of(events, ToolResult)
    assert len(results) == 1 and results[0].content.strip() == "5"
    first = of(events, AssistantMessage)[0]
    assert first.reasoning == "thinking" and "signature" in first.provider_data["dev-anthropic"]
    assert events[-1].kind == "turn_completed"


async def test_parallel_tools_and_unavailable_server(tight: Harness) -> None:
    text = '[[tool:echo {"text": "a"}]] [[tool:echo {"text": "b"}]]'
    events = await turn(tight, "par", text, tools=True)
    assert len(of(events, ToolCall)) == 2
    assert sorted(r.content for r in of(events, ToolResult)) == ["a", "b"]
    assert of(events, AssistantMessage)[0].tool_calls and events[-1].kind == "turn_completed"


async def test_step_limit_then_a_final_answer_without_tools(tight: Harness) -> None:
    text = " ".join(f'[[tool:echo step={i} {{"text": "s{i}"}}]]' for i in range(3))
    events = await turn(tight, "steps", text)
    assert len(of(events, ToolResult)) == 2
    assert [f.fallback for f in of(events, Fallback)] == ["step_limit"]
    assert events[-1].kind == "turn_completed"


async def test_unavailable_mcp_server_is_a_fallback(tight: Harness) -> None:
    await tight.store.append(
        "down",
        NewEvent(event=SessionStarted(owner="alice", provider="dev", tool_servers=("broken",))),
    )
    await tight.say("down", "hello", "t1")
    events = await tight.until_terminal("down", "t1")
    fallbacks = of(events, Fallback)
    assert [(f.fallback, f.from_) for f in fallbacks] == [("mcp_unavailable", "broken")]
    assert events[-1].kind == "turn_completed"


async def cancel_when(h: Harness, session: str, kind: str) -> list[Recorded]:
    out: list[Recorded] = []
    async with asyncio.timeout(30):
        async for rec in h.store.follow(session):
            if rec.turn != "t1" or rec.kind == "user_message":
                continue
            out.append(rec)
            if rec.kind == kind and not any(r.kind == "cancel_requested" for r in out):
                await h.store.append(
                    session, NewEvent(event=CancelRequested(reason="user stop"), turn="t1")
                )
            if rec.kind == "turn_cancelled":
                return out
    raise AssertionError("no TurnCancelled")


async def test_cancel_mid_stream_keeps_the_partial_text(tight: Harness) -> None:
    await tight.start("stop", tools=False)
    await tight.say("stop", "[[pace:ttft=0,tps=40]] [[words:400]]", "t1")
    events = await cancel_when(tight, "stop", "text_delta")
    cancelled = events[-1].event
    assert isinstance(cancelled, TurnCancelled) and cancelled.partial_text
    assert len(cancelled.partial_text.split()) < 400
    assert not of(events, AssistantMessage)


async def test_cancel_mid_tool_call(tight: Harness) -> None:
    await tight.start("stoptool")
    await tight.say("stoptool", '[[tool:sleep {"seconds": 30}]]', "t1")
    async with asyncio.timeout(10):  # far less than the tool's 30 s
        events = await cancel_when(tight, "stoptool", "tool_call")
    assert events[-1].kind == "turn_cancelled" and not of(events, ToolResult)


async def test_provider_switched_when_the_primary_keeps_failing(
    js_store: JetStreamEventStore, devmodel_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=str(tmp_path),
        providers={
            "primary": {
                "api": "openai",
                "base_url": f"{devmodel_url}/v1",
                "key_env": "PRIMARY_KEY",
                "models": ["threadline-dev"],
                "default_model": "threadline-dev",
            }
        },
        mcp_servers={"threadline": {"transport": "stdio", "command": ["true"]}},
    )
    agent = AgentSettings(worker="f", retry_base_s=0.01, fallback_providers=("dev",))
    async with serve_agent(
        settings, js_store, devmodel_url=devmodel_url, agent=agent,
        env={"PRIMARY_KEY": "bad-key"}, ack_wait_s=5,
    ):  # fmt: skip
        h = Harness(js_store)
        events = await turn(h, "switch", "hello", provider="primary", tools=False)
    fallbacks = of(events, Fallback)
    assert [(f.fallback, f.from_, f.to) for f in fallbacks] == [
        ("provider_switched", "primary", "dev")
    ]
    assert events[-1].kind == "turn_completed"
