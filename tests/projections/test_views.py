"""The view contract: every test runs on SQLite and on PostgreSQL, over a real JetStream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.projections.conftest import ConfigFactory
from tests.projections.helpers import (
    close,
    open_views,
    project_to_end,
    rich_session,
    simple_session,
)
from threadline.base.config import Settings
from threadline.base.errors import InvalidInput
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import UserMessage
from threadline.events.store import NewEvent
from threadline.projections import ProjectionReader, serve_projector
from threadline.projections.batch import Resync
from threadline.projections.config import ProjectorConfig
from threadline.projections.views.base import day_of


async def test_sessions_view_lists_per_owner(
    js_store: JetStreamEventStore, config: ProjectorConfig
) -> None:
    recs = await js_store.append("s1", rich_session("alice"))
    await js_store.append("s2", simple_session("alice", "second session"))
    await js_store.append("s3", simple_session("bob"))
    recorder, _ = await project_to_end(js_store, config)
    reader = ProjectionReader(recorder)
    page = await reader.list_sessions("alice")
    assert [s.session for s in page.sessions] == ["s2", "s1"]  # newest first
    assert page.next_cursor is None
    s1 = page.sessions[1]
    assert (s1.owner, s1.title, s1.provider, s1.model) == (
        "alice", "What's the weather in Paris?", "openai", "gpt-x",
    )  # fmt: skip
    # 4 user messages, 2 + 1 counted assistant messages, the cancelled turn's partial text
    assert (s1.message_count, s1.turn_count, s1.last_turn, s1.last_status) == (
        8, 4, "t4", "cancelled",
    )  # fmt: skip
    assert (s1.version, s1.position) == (28, recs[-1].position)
    assert (s1.created_at, s1.updated_at) == (recs[0].envelope.at, recs[-1].envelope.at)
    assert page.sessions[0].title == "second session"
    assert [s.session for s in (await reader.list_sessions("bob")).sessions] == ["s3"]
    assert (await reader.list_sessions("nobody")).sessions == []
    await close(recorder)


async def test_session_list_pages_with_a_cursor(
    js_store: JetStreamEventStore, config: ProjectorConfig
) -> None:
    for i in range(7):
        await js_store.append(f"c{i}", simple_session("carol"))
    recorder, _ = await project_to_end(js_store, config)
    reader = ProjectionReader(recorder)
    seen: list[str] = []
    cursor = None
    while True:
        page = await reader.list_sessions("carol", limit=3, cursor=cursor)
        seen += [s.session for s in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"c{i}" for i in reversed(range(7))]
    for bad in ("garbage", "9754342031708691749.X0wCJV", "-1.x"):  # found by schemathesis
        with pytest.raises(InvalidInput):
            await reader.list_sessions("carol", cursor=bad)
    await close(recorder)


async def test_history_view_has_messages_tool_calls_fallbacks_and_endings(
    js_store: JetStreamEventStore, config: ProjectorConfig
) -> None:
    recs = await js_store.append("s1", rich_session("alice", title="Weather"))
    recorder, _ = await project_to_end(js_store, config)
    detail = await ProjectionReader(recorder).get_session("s1")
    assert detail is not None
    assert detail.summary.title == "Weather"  # set explicitly: not taken from the message
    assert [(m.role, m.text, m.superseded) for m in detail.messages] == [
        ("user", "What's the weather in Paris?", False),
        ("assistant", "Let me check.", False),
        ("assistant", "It is 18C and sunny.", False),
        ("user", "Tell me a joke", False),
        ("assistant", "Why did the", True),  # attempt 1 of t2, replaced by attempt 2
        ("assistant", "A joke.", False),
        ("user", "Again", False),
        ("user", "Write an essay", False),
        ("assistant", "Once upon", False),  # the cancelled turn's partial text
    ]
    assert [m.version for m in detail.messages] == sorted(m.version for m in detail.messages)
    assert detail.messages[-1].finish_reason == "cancelled"
    turns = {t.turn: t for t in detail.turns}
    assert [t.turn for t in detail.turns] == ["t1", "t2", "t3", "t4"]
    t1, t2, t3, t4 = turns["t1"], turns["t2"], turns["t3"], turns["t4"]
    assert (t1.status, t1.steps, t1.ttft_ms, t1.duration_ms) == ("completed", 2, 400.0, 1500.0)
    [call] = t1.tool_calls
    assert (call.call_id, call.tool, call.server, call.arguments) == (
        "c1", "forecast", "weather", {"city": "Paris"},
    )  # fmt: skip
    assert (call.summary, call.is_error, call.duration_ms) == ("18C, sunny", False, 120.0)
    assert call.result_version == 8 and not call.superseded
    assert (t2.status, t2.attempt, t2.provider, t2.model) == (
        "completed", 2, "anthropic", "claude-x",
    )  # fmt: skip
    [switch] = t2.fallbacks
    assert (switch.kind, switch.from_, switch.to, switch.attempt) == (
        "provider_switched", "openai/gpt-x", "anthropic/claude-x", 2,
    )  # fmt: skip
    assert (t3.status, t3.error, t3.error_message, t3.retryable) == (
        "failed", "rate_limit", "rate limited; retry after 20 s", True,
    )  # fmt: skip
    assert [f.kind for f in t3.fallbacks] == ["tools_disabled"]
    assert (t4.status, t4.cancel_requested, t4.cancel_request_reason, t4.cancel_reason) == (
        "cancelled", True, "stop pressed", "user",
    )  # fmt: skip
    assert t4.partial_text == "Once upon" and t4.ended_at == recs[-1].envelope.at
    assert await ProjectionReader(recorder).get_session("nope") is None
    await close(recorder)


async def test_usage_view_sums_per_owner_day_provider_and_model(
    js_store: JetStreamEventStore, config: ProjectorConfig
) -> None:
    recs = await js_store.append("s1", rich_session("alice"))
    await js_store.append("s2", simple_session("alice"))
    await js_store.append("s3", simple_session("bob"))
    recorder, _ = await project_to_end(js_store, config)
    reader = ProjectionReader(recorder)
    report = await reader.usage("alice")
    day = day_of(recs[0].envelope.at)
    by_model = {(r.day, r.provider, r.model): r for r in report.rows}
    claude, gpt = by_model[(day, "anthropic", "claude-x")], by_model[(day, "openai", "gpt-x")]
    assert (claude.turns, claude.input_tokens, claude.output_tokens) == (1, 5, 3)
    # t1 (30/13), t3 failed (0/0), t4 cancelled (0/0), s2 (3/1)
    assert (gpt.turns, gpt.input_tokens, gpt.output_tokens) == (4, 33, 14)
    assert gpt.ttft_ms_avg == pytest.approx((400.0 + 50.0) / 2)
    assert gpt.duration_ms >= 1500.0
    assert (report.turns, report.input_tokens, report.output_tokens) == (5, 38, 17)
    assert await reader.usage("alice", day=day) == report.__class__(
        owner="alice", day=day, rows=report.rows, turns=5, input_tokens=38, output_tokens=17
    )
    assert (await reader.usage("alice", day="2000-01-01")).rows == []
    assert (await reader.usage("bob")).turns == 1
    with pytest.raises(InvalidInput):
        await reader.usage("alice", day="yesterday")
    await close(recorder)


async def test_a_replayed_batch_changes_nothing(
    js_store: JetStreamEventStore, config: ProjectorConfig
) -> None:
    await js_store.append("s1", rich_session())
    recorder, projector = await project_to_end(js_store, config)
    before = await asyncio.to_thread(recorder.dump)
    raw = [(r.position, r.raw) for r in await js_store.load("s1")]
    state = await asyncio.to_thread(recorder.state)
    # Delivered again to a projector that knows where it is: every event is skipped.
    outcome = await asyncio.to_thread(recorder.apply_batch, raw, state)
    assert outcome.applied == 0
    # Delivered again to one that lost its place: the tracking insert refuses, all rolls back.
    stale = state._replace(positions=dict.fromkeys(state.positions, 0))
    with pytest.raises(Resync):
        await asyncio.to_thread(recorder.apply_batch, raw, stale)
    assert await asyncio.to_thread(recorder.dump) == before
    assert projector.positions == dict.fromkeys(projector.positions, raw[-1][0])
    await close(recorder)


async def test_projector_resumes_after_its_tracked_position(
    js_store: JetStreamEventStore, new_config: ConfigFactory
) -> None:
    config = new_config()
    await js_store.append("s1", rich_session()[:12])
    recorder, first = await project_to_end(js_store, config, batch_size=5)
    await close(recorder)
    assert first.events == 12
    await js_store.append("s1", rich_session()[12:])
    recorder, second = await project_to_end(js_store, config)
    assert second.events == 16  # only what came after the tracked position
    fresh, _ = await project_to_end(js_store, new_config())
    assert await asyncio.to_thread(recorder.dump) == await asyncio.to_thread(fresh.dump)
    await close(recorder)
    await close(fresh)


async def test_read_your_writes_with_a_live_projector(
    js_store: JetStreamEventStore,
    config: ProjectorConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("THREADLINE_PROJECTIONS_SCHEMA", config.schema)
    settings = Settings(data_dir=str(tmp_path / "data"), database_url=config.database_url)
    async with serve_projector(settings, js_store) as projector:
        reader = projector.reader
        recs = await js_store.append("live", simple_session("dana"))
        assert await reader.wait("history", recs[-1].position, timeout=10)
        detail = await reader.get_session("live")
        assert detail is not None and [m.text for m in detail.messages] == ["hi", "hello"]
        [more] = await js_store.append("live", NewEvent(event=UserMessage(text="more"), turn="t2"))
        assert await reader.wait(None, more.position, timeout=10)  # every view
        summary = (await reader.list_sessions("dana")).sessions[0]
        assert (summary.message_count, summary.position) == (3, more.position)
        assert not await reader.wait("usage", more.position + 1, timeout=0.2)
        # A reader in another process has no projector to wake it: the library's wait.
        other = ProjectionReader(await open_views(ProjectorConfig.from_settings(settings)))
        assert await other.wait("sessions", more.position, timeout=5)
        assert not await other.wait(None, more.position + 1, timeout=0.3)
        await close(other.recorder)
    with pytest.raises(InvalidInput):
        await reader.wait("nope", 1)


async def test_the_in_memory_store_projects_too(config: ProjectorConfig) -> None:
    store = MemoryEventStore()
    await store.append("m1", rich_session("mia"))
    recorder, projector = await project_to_end(store, config)
    assert projector.positions == dict.fromkeys(projector.positions, 28)
    [summary] = (await ProjectionReader(recorder).list_sessions("mia")).sessions
    assert (summary.session, summary.message_count, summary.last_status) == ("m1", 8, "cancelled")
    await close(recorder)
