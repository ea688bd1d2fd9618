"""Spans of a turn follow the OpenTelemetry GenAI conventions: one ``invoke_agent`` per
attempt, a ``chat {model}`` per model request (a failed one included), an
``execute_tool {tool}`` per tool call; and the same turn's metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.observability.conftest import Spans, run_turn, start_session, with_mcp
from tests.observability.promtext import parse, total, value
from threadline.events.jetstream import JetStreamEventStore
from threadline.services.agent.service import serve_agent
from threadline.services.agent.telemetry import AgentTelemetry
from threadline.services.agent.turn import AgentSettings

TEXT = '[[fail:429 retry-after=0.01 times=1]] say [[tool:echo {"text": "marmalade"}]] zanzibar'


@pytest.fixture
async def agent(
    js_store: JetStreamEventStore, devmodel_url: str, telemetry: AgentTelemetry, tmp_path: Path
) -> AsyncIterator[JetStreamEventStore]:
    settings = AgentSettings(worker="obs", retry_base_s=0.01, delta_window_s=0.005)
    async with serve_agent(
        with_mcp(str(tmp_path)), js_store, devmodel_url=devmodel_url, agent=settings, env={},
        ack_wait_s=5, telemetry=telemetry,
    ):  # fmt: skip
        yield js_store


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


def tokens(span: ReadableSpan, kind: str) -> int:
    count = attributes(span)[f"gen_ai.usage.{kind}_tokens"]
    assert isinstance(count, int)
    return count


async def test_a_turn_with_a_retry_and_a_tool_call_makes_the_span_tree(
    agent: JetStreamEventStore, spans: Spans, telemetry: AgentTelemetry
) -> None:
    await start_session(agent, "tr1")
    events = await run_turn(agent, "tr1", TEXT, "t1")
    assert events[-1].kind == "turn_completed"
    [call_id] = [r.event.call_id for r in events if r.kind == "tool_call"]  # type: ignore[union-attr]

    finished = await spans.ended(1)
    [root] = [s for s in finished if s.name == "invoke_agent threadline"]
    assert root.parent is None and root.kind == SpanKind.INTERNAL
    children = sorted((s for s in finished if s is not root), key=lambda s: s.start_time or 0)
    assert [s.name for s in children] == [
        "chat threadline-dev", "chat threadline-dev", "execute_tool threadline__echo",
        "chat threadline-dev",
    ]  # fmt: skip
    for child in children:
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id

    assert attributes(root) | {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "threadline",
        "gen_ai.provider.name": "dev",
        "gen_ai.request.model": "threadline-dev",
        "gen_ai.conversation.id": "tr1",
        "threadline.session.id": "tr1",
        "threadline.turn.id": "t1",
        "threadline.turn.attempt": 1,
        "threadline.turn.outcome": "completed",
        "threadline.turn.steps": 2,
    } == attributes(root)
    assert root.status.status_code == StatusCode.UNSET
    [fallback] = root.events
    assert fallback.name == "threadline.fallback"
    assert dict(fallback.attributes or {})["threadline.fallback.kind"] == "retry"

    failed, tooled, tool, answered = children
    assert failed.kind == SpanKind.CLIENT and failed.status.status_code == StatusCode.ERROR
    assert attributes(failed)["error.type"] == "rate_limit"
    assert attributes(failed)["http.response.status_code"] == 429
    for chat, finish in ((tooled, "tool_calls"), (answered, "stop")):
        attrs = attributes(chat)
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "dev"
        assert attrs["gen_ai.request.model"] == "threadline-dev"
        assert attrs["gen_ai.response.finish_reasons"] == (finish,)
        assert tokens(chat, "input") > 0 and tokens(chat, "output") > 0
        assert attrs["server.address"] == "127.0.0.1"
        assert chat.status.status_code == StatusCode.UNSET
    assert attributes(tool) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "threadline__echo",
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "extension",
        "threadline.tool.server": "threadline",
    }
    assert tokens(root, "input") == tokens(tooled, "input") + tokens(answered, "input")

    # no content by default: neither the message, the arguments nor the result
    everything = repr([(s.name, s.attributes, [e.attributes for e in s.events]) for s in finished])
    for content in ("zanzibar", "marmalade", "text", "returned"):
        assert content not in everything, content

    samples = parse(await telemetry.registry.render())
    model = {"provider": "dev", "model": "threadline-dev"}
    assert value(samples, "threadline_agent_turns_total", outcome="completed") == 1
    assert value(samples, "threadline_agent_time_to_first_token_seconds_count", **model) == 1
    assert value(samples, "threadline_agent_turn_duration_seconds_count", **model) == 1
    assert value(samples, "threadline_agent_fallbacks_total", kind="retry") == 1
    assert value(samples, "threadline_agent_fallbacks_total", kind="step_limit") == 0
    tool_labels = {"server": "threadline", "tool": "echo"}
    assert value(samples, "threadline_agent_tool_call_duration_seconds_count", **tool_labels) == 1
    assert value(samples, "threadline_agent_tool_calls_total", **tool_labels, outcome="ok") == 1
    requests = "threadline_agent_provider_requests_total"
    assert value(samples, requests, **model, outcome="rate_limit") == 1
    assert value(samples, requests, **model, outcome="ok") == 2
    assert (
        total(samples, "threadline_agent_tokens_total", type="input")
        == attributes(root)["gen_ai.usage.input_tokens"]
    )
    assert value(samples, "threadline_agent_running_turns") == 0


async def test_a_failed_turn_is_an_error_span_with_its_kind(
    agent: JetStreamEventStore, spans: Spans, telemetry: AgentTelemetry
) -> None:
    await start_session(agent, "tr2", tools=False)
    events = await run_turn(agent, "tr2", "[[fail:401]] hi", "t1")
    assert events[-1].kind == "turn_failed"
    [root] = [s for s in await spans.ended(1) if s.name.startswith("invoke_agent")]
    assert root.status.status_code == StatusCode.ERROR
    assert attributes(root)["error.type"] == "auth"
    assert attributes(root)["threadline.turn.outcome"] == "failed"
    samples = parse(await telemetry.registry.render())
    assert value(samples, "threadline_agent_turns_total", outcome="failed") == 1
    assert value(samples, "threadline_agent_turn_failures_total", kind="auth") == 1
