"""Sessions built by hand with ``NewEvent``, and running a projector to the end of the log."""

from __future__ import annotations

import asyncio

from threadline.events.schema import (
    AssistantMessage,
    CancelRequested,
    Fallback,
    SessionStarted,
    TextDelta,
    ToolCall,
    ToolCallRef,
    ToolResult,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
    UserMessage,
)
from threadline.events.store import EventStore, NewEvent
from threadline.projections.config import ProjectorConfig
from threadline.projections.projector import Projector
from threadline.projections.recorder import ViewRecorder


def user(text: str, turn: str, owner: str = "alice") -> NewEvent:
    return NewEvent(event=UserMessage(text=text), turn=turn, actor=f"user:{owner}")


def agent(event: object, turn: str, attempt: int = 1, worker: str = "w1") -> NewEvent:
    return NewEvent(event=event, turn=turn, attempt=attempt, actor=f"agent:{worker}")  # type: ignore[arg-type]


def started(
    turn: str, attempt: int = 1, provider: str = "openai", model: str = "gpt-x"
) -> NewEvent:
    worker = f"w{attempt}"
    return agent(
        TurnStarted(turn_id=turn, attempt=attempt, provider=provider, model=model, worker=worker),
        turn, attempt, worker,
    )  # fmt: skip


def rich_session(owner: str = "alice", title: str = "") -> list[NewEvent]:
    """Four turns: tools (t1), a superseded attempt and a provider switch (t2),
    a failure after a fallback (t3), a cancellation with partial text (t4). 28 events."""
    call = {"call_id": "c1", "tool": "forecast", "arguments": {"city": "Paris"}}
    switched = Fallback(
        fallback="provider_switched", reason="rate limited", from_="openai/gpt-x",
        to="anthropic/claude-x",
    )  # fmt: skip
    failed = TurnFailed(
        error="rate_limit", message="rate limited; retry after 20 s", retryable=True
    )
    return [
        NewEvent(
            event=SessionStarted(owner=owner, title=title, provider="openai", model="gpt-x"),
            actor=f"user:{owner}",
        ),
        # t1: a tool call in step 0, the answer in step 1
        user("What's the weather in Paris?", "t1", owner),
        started("t1"),
        agent(TextDelta(text="Let me "), "t1"),
        agent(TextDelta(text="check."), "t1"),
        agent(ToolCall(server="weather", **call), "t1"),  # type: ignore[arg-type]
        agent(
            AssistantMessage(
                text="Let me check.",
                finish_reason="tool_calls",
                usage=tokens(10, 5),
                tool_calls=(ToolCallRef(**call),),  # type: ignore[arg-type]
            ),
            "t1",
        ),  # fmt: skip
        agent(
            ToolResult(call_id="c1", tool="forecast", content="18C, sunny", duration_ms=120), "t1"
        ),
        agent(TextDelta(text="It is 18C and sunny.", step=1), "t1"),
        agent(AssistantMessage(text="It is 18C and sunny.", usage=tokens(20, 8), step=1), "t1"),
        agent(
            TurnCompleted(usage=tokens(30, 13), ttft_ms=400.0, duration_ms=1500.0, steps=2), "t1"
        ),
        # t2: attempt 1 dies after a message; attempt 2 switches provider and completes
        user("Tell me a joke", "t2", owner),
        started("t2"),
        agent(TextDelta(text="Why"), "t2"),
        agent(AssistantMessage(text="Why did the", usage=tokens(4, 2)), "t2"),
        started("t2", 2, provider="anthropic", model="claude-x"),
        agent(switched, "t2", 2, "w2"),
        agent(AssistantMessage(text="A joke.", usage=tokens(5, 3)), "t2", 2, "w2"),
        agent(TurnCompleted(usage=tokens(5, 3), ttft_ms=300.0, duration_ms=800.0), "t2", 2, "w2"),
        # t3: tools disabled, then a rate limit
        user("Again", "t3", owner),
        started("t3"),
        agent(Fallback(fallback="tools_disabled", reason="model does not support tools"), "t3"),
        agent(failed, "t3"),
        # t4: stopped by the user
        user("Write an essay", "t4", owner),
        started("t4"),
        agent(TextDelta(text="Once upon"), "t4"),
        NewEvent(event=CancelRequested(reason="stop pressed"), turn="t4", actor=f"user:{owner}"),
        agent(TurnCancelled(partial_text="Once upon", reason="user"), "t4"),
    ]


def tokens(given: int, received: int) -> Usage:
    return Usage(input_tokens=given, output_tokens=received)


def simple_session(owner: str, text: str = "hi", answer: str = "hello") -> list[NewEvent]:
    return [
        NewEvent(event=SessionStarted(owner=owner, provider="openai", model="gpt-x")),
        user(text, "t1", owner),
        started("t1"),
        agent(TextDelta(text=answer), "t1"),
        agent(AssistantMessage(text=answer, usage=Usage(input_tokens=3, output_tokens=1)), "t1"),
        agent(TurnCompleted(usage=Usage(input_tokens=3, output_tokens=1), ttft_ms=50.0), "t1"),
    ]


async def open_views(config: ProjectorConfig) -> ViewRecorder:
    return await asyncio.to_thread(config.open)


async def project_to_end(
    store: EventStore, config: ProjectorConfig, **options: object
) -> tuple[ViewRecorder, Projector]:
    """Open (or create) the views and project the log up to its end."""
    recorder = await open_views(config)
    projector = Projector(store, recorder, until_end=True, **options)  # type: ignore[arg-type]
    await projector.run()
    return recorder, projector


async def close(recorder: ViewRecorder) -> None:
    await asyncio.to_thread(recorder.close)
