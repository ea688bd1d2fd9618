"""The view contract: every test runs on SQLite and on PostgreSQL, over a real JetStream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.projections.conftest import ConfigFactory
from tests.projections.helpers import (
    agent,
    close,
    open_views,
    project_to_end,
    rich_session,
    simple_session,
    started,
    tokens,
    user,
)
from threadline.base.config import Settings
from threadline.base.errors import InvalidInput
from threadline.events.conversation import ToolTurn
from threadline.events.fold import fold
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import (
    AssistantMessage,
    SessionRenamed,
    SessionStarted,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    UserMessage,
)
from threadline.events.store import NewEvent, Recorded, Stored, subject_for
from threadline.projections import ProjectionReader, serve_projector
from threadline.projections.config import ProjectorConfig
from threadline.projections.recorder import Resync
from threadline.projections.sql import Db
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


async def test_a_rename_replaces_the_title_in_the_list(
    js_store: JetStreamEventStore, config: ProjectorConfig
) -> None:
    await js_store.append("r1", rich_session("alice"))
    await js_store.append("r1", NewEvent(event=SessionRenamed(title="Paris"), actor="user:alice"))
    await js_store.append("r1", user("and tomorrow?", "t9"))  # no longer the title's source
    recorder, _ = await project_to_end(js_store, config)
    page = await ProjectionReader(recorder).list_sessions("alice")
    assert [s.title for s in page.sessions] == ["Paris"]
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


def edge_session(owner: str) -> list[NewEvent]:
    """What the turn rules must get right: a stale start and stale steps of an older
    attempt, a second terminal event, a restart after the end, a repeated user message,
    a message outside any turn, a turn started without a user message."""
    return [
        NewEvent(event=SessionStarted(owner=owner, provider="openai", model="gpt-x")),
        user("first", "t1", owner),
        started("t1", 2),
        started("t1", 1),  # stale: attempt 1 after attempt 2
        agent(AssistantMessage(text="stale", usage=tokens(9, 9)), "t1", 1),
        agent(AssistantMessage(text="kept", usage=tokens(2, 1)), "t1", 2),
        agent(TurnCompleted(), "t1", 2),
        agent(TurnFailed(error="internal", message="twice"), "t1", 2),  # anomaly
        started("t1", 3),  # anomaly: the turn has ended
        user("first again", "t1", owner),  # not a new turn
        NewEvent(event=UserMessage(text="aside")),  # outside any turn
        started("t9"),  # a turn without a user message
        agent(AssistantMessage(text="answer", usage=tokens(1, 1)), "t9"),
        agent(TurnCancelled(partial_text="ans"), "t9"),
    ]


def expected_row(records: list[Recorded]) -> tuple[int, int, str, str]:
    """What the sessions view must say, by the session model."""
    state = fold(records)
    shown = [e for e in state.transcript() if not isinstance(e.message, ToolTurn)]
    last = next(reversed(state.turns), "")
    return len(shown), len(state.turns), last, state.status(last) or ""


def usage_rows(db: Db) -> list[tuple[str, str, int, str, int]]:
    rows = db.all("SELECT session, turn, attempt, status, input_tokens FROM {p}usage")
    return [(r[0], r[1], int(r[2]), r[3], int(r[4])) for r in rows]


async def test_the_views_say_what_the_session_model_says(
    js_store: JetStreamEventStore, config: ProjectorConfig
) -> None:
    """Every prefix of a session with tools, retries, fallbacks, failures and cancels,
    and of one with the rules' edge cases: the sessions row (messages shown, turns, last
    turn and status) and the usage rows (the attempt that counts, its status) are the
    fold's."""
    sessions = {"rich": rich_session("ines"), "edge": edge_session("ines")}
    for name, events in sessions.items():
        for n in range(1, len(events) + 1):
            await js_store.append(f"{name}-{n}", events[:n])
    recorder, _ = await project_to_end(js_store, config)
    listed = (await ProjectionReader(recorder).list_sessions("ines", limit=500)).sessions
    rows = {s.session: (s.message_count, s.turn_count, s.last_turn, s.last_status) for s in listed}
    usage = await asyncio.to_thread(recorder.query, usage_rows)
    for name, events in sessions.items():
        for n in range(2, len(events) + 1):
            records = await js_store.load(f"{name}-{n}")
            assert rows[f"{name}-{n}"] == expected_row(records), (name, n)
            state = fold(records)
            expected = {
                (t.turn_id, t.attempt, t.status)
                for t in state.turns.values()
                if t.started  # the usage view has a row per started turn
            }
            got = {
                (turn, attempt, status)
                for s, turn, attempt, status, _ in usage
                if s == f"{name}-{n}"
            }
            assert got == expected, (name, n)
    edge = {turn: tokens for s, turn, _, _, tokens in usage if s == "edge-14"}
    assert edge == {"t1": 2, "t9": 1}  # the stale step of attempt 1 is not counted
    assert fold(await js_store.load("edge-14")).anomalies == [
        "second terminal event for turn t1",
        "turn t1 restarted",
    ]
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
    prefix = js_store.prefix
    raw = [
        Stored(r.position, subject_for(prefix, "s1", r.kind), r.raw)
        for r in await js_store.load("s1")
    ]
    state = await asyncio.to_thread(recorder.state)
    # Delivered again to a projector that knows where it is: every event is skipped.
    outcome = await asyncio.to_thread(recorder.apply_batch, raw, state)
    assert outcome.positions == state.positions and not outcome.errors
    assert await asyncio.to_thread(recorder.dump) == before
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
        assert await reader.wait("sessions", recs[-1].position, timeout=10)
        (listed,) = (await reader.list_sessions("dana")).sessions
        assert (listed.message_count, listed.last_status) == (2, "completed")
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
