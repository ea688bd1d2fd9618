"""Turns end to end: user message in the log -> the agent -> the dev model -> events."""

from __future__ import annotations

from tests.agent.conftest import Harness
from threadline.events.fold import fold
from threadline.events.schema import AssistantMessage, ToolCall, ToolResult, TurnCompleted


def kinds(records: list) -> list[str]:  # type: ignore[type-arg]
    return [r.kind for r in records]


async def test_plain_answer(harness: Harness) -> None:
    await harness.start("plain", tools=False)
    await harness.say("plain", "hello there", "t1")
    events = await harness.until_terminal("plain", "t1")
    assert kinds(events)[0] == "turn_started" and kinds(events)[-1] == "turn_completed"
    assert "text_delta" in kinds(events)
    answer = next(r.event for r in events if isinstance(r.event, AssistantMessage))
    assert "hello there" in answer.text
    deltas = "".join(r.event.text for r in events if r.kind == "text_delta")  # type: ignore[union-attr]
    assert deltas == answer.text
    done = events[-1].event
    assert isinstance(done, TurnCompleted) and done.usage.output_tokens > 0


async def test_tool_call_through_mcp(harness: Harness) -> None:
    await harness.start("tools")
    await harness.say("tools", 'check [[tool:echo {"text": "ping-42"}]]', "t1")
    events = await harness.until_terminal("tools", "t1")
    call = next(r.event for r in events if isinstance(r.event, ToolCall))
    result = next(r.event for r in events if isinstance(r.event, ToolResult))
    assert call.tool == "threadline__echo" and call.server == "threadline"
    assert call.arguments == {"text": "ping-42"}
    assert result.call_id == call.call_id and not result.is_error and "ping-42" in result.content
    final = [r.event for r in events if isinstance(r.event, AssistantMessage)][-1]
    assert "ping-42" in final.text and kinds(events)[-1] == "turn_completed"
    state = fold(await harness.store.load("tools"))
    assert state.status("t1") == "completed" and len(state.committed) == 4


async def test_second_message_is_answered_after_the_first(harness: Harness) -> None:
    await harness.start("queue", tools=False)
    await harness.say("queue", "first [[words:30]]", "t1")
    await harness.say("queue", "second", "t2")
    await harness.until_terminal("queue", "t2")
    records = await harness.store.load("queue")
    terminal = [r.turn for r in records if r.kind == "turn_completed"]
    assert terminal == ["t1", "t2"]
    started_t2 = next(r.version for r in records if r.kind == "turn_started" and r.turn == "t2")
    ended_t1 = next(r.version for r in records if r.kind == "turn_completed" and r.turn == "t1")
    assert started_t2 > ended_t1
