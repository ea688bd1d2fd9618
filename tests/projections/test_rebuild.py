"""Rebuilds: deterministic, per view, swapped in under a running projector; status."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.projections.cli import run_command, settings_for
from tests.projections.conftest import ConfigFactory
from tests.projections.helpers import (
    close,
    open_views,
    project_to_end,
    rich_session,
    simple_session,
)
from threadline.base.aio import stop_task
from threadline.events.jetstream import JetStreamEventStore
from threadline.projections import Projector, rebuild, status
from threadline.projections.config import ProjectorConfig
from threadline.services.cli import projections as projections_command


async def fill(store: JetStreamEventStore, sessions: int = 4) -> None:
    for i in range(sessions):
        await store.append(f"r{i}", rich_session(owner=f"o{i % 2}"))
        await store.append(f"q{i}", simple_session(owner=f"o{i % 3}"))


async def test_two_rebuilds_give_identical_dumps(
    js_store: JetStreamEventStore, new_config: ConfigFactory
) -> None:
    await fill(js_store)
    config = new_config(batch_size=7)
    recorder, _ = await project_to_end(js_store, config)
    live = await asyncio.to_thread(recorder.dump)
    first = await rebuild(js_store, config)
    assert first.events == await js_store.last_position() and first.views == [
        "sessions", "usage",
    ]  # fmt: skip
    after_first = await asyncio.to_thread(recorder.dump)
    await rebuild(js_store, config)
    after_second = await asyncio.to_thread(recorder.dump)
    assert after_first == after_second == live
    assert len(live.splitlines()) > 50
    # ... and the batching does not matter either
    one_by_one, _ = await project_to_end(js_store, new_config(), batch_size=1)
    assert await asyncio.to_thread(one_by_one.dump) == live
    await close(one_by_one)
    await close(recorder)


async def test_rebuild_of_one_view_leaves_the_others(
    js_store: JetStreamEventStore, config: ProjectorConfig
) -> None:
    await fill(js_store, 2)
    recorder, _ = await project_to_end(js_store, config)
    usage = await asyncio.to_thread(recorder.dump, ["usage"])
    with recorder._write() as db:  # damage two views by hand
        db.run("DELETE FROM {p}usage")
        db.run("UPDATE {p}sessions SET title = 'damaged'")
    result = await rebuild(js_store, config, ["usage"])
    assert result.views == ["usage"]
    assert await asyncio.to_thread(recorder.dump, ["usage"]) == usage
    assert "damaged" in await asyncio.to_thread(recorder.dump, ["sessions"])  # not rebuilt
    state = await asyncio.to_thread(recorder.state)
    assert state.positions["usage"] == state.positions["sessions"] == result.position
    await close(recorder)


async def test_rebuild_swaps_in_under_a_running_projector(
    js_store: JetStreamEventStore, new_config: ConfigFactory
) -> None:
    config = new_config(batch_size=5)
    await fill(js_store, 3)
    recorder = await open_views(config)
    projector = Projector(js_store, recorder, batch_size=5)
    task = asyncio.create_task(projector.run())
    writer = asyncio.create_task(fill(js_store, 3))  # appends while the rebuild runs
    result = await rebuild(js_store, config)
    await writer
    await js_store.append("after", simple_session("late"))
    last = await js_store.last_position()
    assert await projector.wait(None, last, timeout=30)
    assert result.position <= last
    assert projector.resyncs >= 1  # it noticed the swap and carried on from there
    await stop_task(task)
    expected, _ = await project_to_end(js_store, new_config())
    assert await asyncio.to_thread(recorder.dump) == await asyncio.to_thread(expected.dump)
    await close(expected)
    await close(recorder)


async def test_status_and_rebuild_commands(
    js_store: JetStreamEventStore,
    nats_url: str,
    config: ProjectorConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(js_store, nats_url, tmp_path, config, monkeypatch)
    views = ProjectorConfig.from_settings(settings)
    await fill(js_store, 1)
    recorder, _ = await project_to_end(js_store, views)
    await js_store.append("extra", simple_session("x"))  # 6 events the views have not seen
    last = await js_store.last_position()
    assert [(s.view, s.position, s.lag) for s in await status(js_store, recorder)] == [
        ("sessions", last - 6, 6), ("usage", last - 6, 6),
    ]  # fmt: skip
    assert await run_command(projections_command, ["status"], settings) == 0
    out = capsys.readouterr().out
    assert "sessions" in out and f"{last:,}" in out and " 6\n" in out
    assert await run_command(projections_command, ["rebuild"], settings) == 0
    out = capsys.readouterr().out
    assert f"rebuilt sessions, usage: {last:,} events" in out
    assert await run_command(projections_command, ["status", "--json"], settings) == 0
    assert '"lag":0' in capsys.readouterr().out
    assert await run_command(projections_command, ["rebuild", "usage"], settings) == 0
    assert "rebuilt usage:" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the history is the fold, not a view
        await run_command(projections_command, ["rebuild", "history"], settings)
    await close(recorder)
