"""Events the views cannot use are loud, never drift: an undecodable record is
quarantined (an error row; every view moves past it), a view that raises on an event
halts there (an error row, a halt record, ``threadline_projector_halted{view} = 1``)
while the other views carry on.

The bad events are written by hand with nats-py onto ``<prefix>.<session>.<kind>``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import msgspec
import pytest

from tests.observability.promtext import parse, value
from tests.projections.cli import run_command, settings_for
from tests.projections.conftest import ConfigFactory
from tests.projections.helpers import close, project_to_end, simple_session
from threadline.base.metrics import Registry
from threadline.events.jetstream import JetStreamEventStore
from threadline.projections import ProjectionHalted, ProjectionReader, ProjectorConfig, rebuild
from threadline.projections import status as view_status
from threadline.projections.metrics import watch_projector
from threadline.projections.projector import Projector
from threadline.services.cli import projections as projections_command


def envelope(session: str, event: dict[str, object], *, at: int | None = None) -> bytes:
    return json.dumps(
        {
            "schema": 1, "session": session, "version": 1,
            "at": time.time_ns() // 1000 if at is None else at, "actor": "system",
            "key": f"raw-{session}", "prev": "0" * 64, "event": event,
        }
    ).encode()  # fmt: skip


async def write_undecodable(store: JetStreamEventStore) -> list[int]:
    """A valid session, bytes that are not JSON, an unknown kind, another valid session."""
    await store.append("good1", simple_session("alice"))
    js, p = store.nc.jetstream(), store.prefix
    acks = [
        await js.publish(f"{p}.junk.text_delta", b"\x00not json at all"),
        await js.publish(f"{p}.odd.mystery", envelope("odd", {"kind": "mystery", "x": 1})),
    ]
    await store.append("good2", simple_session("alice"))
    return [ack.seq for ack in acks]


async def write_unholdable(store: JetStreamEventStore) -> int:
    """A valid session, a message whose timestamp no database column holds (the
    sessions view raises on it; the usage view has nothing to do with a user message),
    another valid session. Returns the bad event's position."""
    await store.append("good1", simple_session("alice"))
    huge = envelope("huge", {"kind": "user_message", "text": "hi"}, at=2**70)
    ack = await store.nc.jetstream().publish(f"{store.prefix}.huge.user_message", huge)
    await store.append("good2", simple_session("alice"))
    return ack.seq


async def scrape(projector: Projector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = Registry()
    unwatch = watch_projector(projector, registry)
    try:
        return parse(await registry.render())
    finally:
        unwatch()


async def test_undecodable_records_are_quarantined_and_every_view_moves_past(
    js_store: JetStreamEventStore, new_config: ConfigFactory
) -> None:
    bad = await write_undecodable(js_store)
    recorder, projector = await project_to_end(js_store, new_config())
    errors = await ProjectionReader(recorder).errors()
    assert [e.position for e in errors] == sorted(bad, reverse=True)
    by_position = {e.position: e for e in errors}
    assert by_position[bad[1]].session == "odd" and "mystery" in by_position[bad[1]].reason
    assert all(e.reason for e in errors)
    assert projector.halted == {}
    last = await js_store.last_position()
    assert projector.positions == dict.fromkeys(projector.positions, last)
    listed = await ProjectionReader(recorder).list_sessions("alice")
    assert {s.session for s in listed.sessions} == {"good1", "good2"}
    samples = await scrape(projector)
    assert value(samples, "threadline_projector_errors_total") == 2
    assert value(samples, "threadline_projector_halted", view="sessions") == 0
    await close(recorder)


async def test_a_record_under_another_sessions_subject_is_quarantined_not_filed_by_its_envelope(
    js_store: JetStreamEventStore, new_config: ConfigFactory
) -> None:
    """Issue 12 item 2: a user message on ``<prefix>.intruder.user_message`` whose envelope
    names ``good1`` is a corrupt record: nothing of it reaches ``good1``'s row."""
    await js_store.append("good1", simple_session("alice"))
    forged = envelope("good1", {"kind": "user_message", "text": "planted"})
    ack = await js_store.nc.jetstream().publish(f"{js_store.prefix}.intruder.user_message", forged)
    recorder, projector = await project_to_end(js_store, new_config())
    [error] = await ProjectionReader(recorder).errors()
    assert (error.position, error.session) == (ack.seq, "intruder")
    assert "disagrees with its subject" in error.reason
    [row] = (await ProjectionReader(recorder).list_sessions("alice")).sessions
    assert (row.session, row.message_count, row.position) == ("good1", 2, ack.seq - 1)
    assert projector.halted == {}
    await close(recorder)


async def test_a_view_that_raises_halts_there_loudly_and_the_others_carry_on(
    js_store: JetStreamEventStore, new_config: ConfigFactory
) -> None:
    bad = await write_unholdable(js_store)
    last = await js_store.last_position()
    config = new_config()  # the default: halt
    for _ in range(2):  # a restart halts at the same event again; nothing moves past it
        recorder, projector = await project_to_end(js_store, config)
        assert "sessions" in projector.halted and "usage" not in projector.halted
        assert projector.halted["sessions"].position == bad
        for view, at in projector.positions.items():
            assert at == (bad - 1 if view in projector.halted else last), view
        reader = projector.reader
        assert not await reader.wait("sessions", bad, timeout=5)  # at once: halted
        assert not await reader.wait(None, last, timeout=5)
        assert await reader.wait("usage", last, timeout=5)
        [error] = await reader.errors()
        assert (error.position, error.session) == (bad, "huge")
        assert "sessions view" in error.reason
        assert [s.session for s in (await reader.list_sessions("alice")).sessions] == ["good1"]
        samples = await scrape(projector)
        assert value(samples, "threadline_projector_halted", view="sessions") == 1
        assert value(samples, "threadline_projector_halted", view="usage") == 0
        assert value(samples, "threadline_projector_errors_total") == len(projector.halted)
        shown = {s.view: s.halted_at for s in await view_status(js_store, recorder)}
        assert shown["sessions"] == bad and shown["usage"] is None
        await close(recorder)
    halted = list(projector.halted)
    # A rebuild refuses to swap in a view that halts, and leaves the live one as it is.
    with pytest.raises(ProjectionHalted, match=f"position {bad}"):
        await rebuild(js_store, config, halted)
    # Told to skip it, a rebuild puts the event aside in those views; a projector carries on.
    await rebuild(js_store, msgspec.structs.replace(config, on_error="skip"), halted)
    recorder, projector = await project_to_end(js_store, config)
    assert projector.halted == {}
    assert projector.positions["sessions"] == last
    assert {s.view: s.halted_at for s in await view_status(js_store, recorder)}["sessions"] is None
    samples = await scrape(projector)
    assert value(samples, "threadline_projector_halted", view="sessions") == 0
    listed = await ProjectionReader(recorder).list_sessions("alice")
    assert {s.session for s in listed.sessions} == {"good1", "good2"}
    await close(recorder)


async def test_skip_steps_over_the_event_in_that_view_only(
    js_store: JetStreamEventStore, new_config: ConfigFactory
) -> None:
    bad = await write_unholdable(js_store)
    recorder, projector = await project_to_end(js_store, new_config(), on_error="skip")
    assert projector.halted == {}
    last = await js_store.last_position()
    assert projector.positions == dict.fromkeys(projector.positions, last)
    [error] = await ProjectionReader(recorder).errors()
    assert error.position == bad and "sessions view" in error.reason
    views_only = await asyncio.to_thread(recorder.dump, ["sessions", "usage"])
    assert "huge" not in views_only  # nothing half-applied
    await close(recorder)


async def test_status_command_shows_a_halted_view(
    js_store: JetStreamEventStore,
    nats_url: str,
    config: ProjectorConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(js_store, nats_url, tmp_path, config, monkeypatch)
    bad = await write_unholdable(js_store)
    recorder, _ = await project_to_end(js_store, ProjectorConfig.from_settings(settings))
    await close(recorder)
    assert await run_command(projections_command, ["status"], settings) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("sessions")]
    assert f"HALTED at position {bad}" in line
    assert "HALTED" not in next(line for line in out.splitlines() if line.startswith("usage"))
    assert await run_command(projections_command, ["status", "--json"], settings) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {v["view"]: v.get("halted_at") for v in shown["views"]}["sessions"] == bad
