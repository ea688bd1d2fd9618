"""Events the views cannot use: recorded as projection errors, then skipped or halting.

The bad events are written by hand with nats-py onto ``<prefix>.<session>.<kind>``.
"""

from __future__ import annotations

import asyncio
import json
import time

from tests.projections.conftest import ConfigFactory
from tests.projections.helpers import close, project_to_end, simple_session
from threadline.events.jetstream import JetStreamEventStore
from threadline.projections import ProjectionReader


def envelope(session: str, event: dict[str, object], *, at: int | None = None) -> bytes:
    return json.dumps(
        {
            "schema": 1, "session": session, "version": 1,
            "at": time.time_ns() // 1000 if at is None else at, "actor": "system",
            "key": f"raw-{session}", "prev": "0" * 64, "event": event,
        }
    ).encode()  # fmt: skip


async def write_bad_events(store: JetStreamEventStore) -> list[int]:
    """A valid session, then: bytes that are not JSON, an unknown kind, a timestamp no
    database column holds; then another valid session. Returns the three bad positions."""
    await store.append("good1", simple_session("alice"))
    js = store.nc.jetstream()
    p = store.prefix
    acks = [
        await js.publish(f"{p}.junk.text_delta", b"\x00not json at all"),
        await js.publish(f"{p}.odd.mystery", envelope("odd", {"kind": "mystery", "x": 1})),
        await js.publish(
            f"{p}.huge.user_message",
            envelope("huge", {"kind": "user_message", "text": "hi"}, at=2**70),
        ),
    ]
    await store.append("good2", simple_session("alice"))
    return [ack.seq for ack in acks]


async def test_bad_events_become_error_rows_and_are_skipped(
    js_store: JetStreamEventStore, new_config: ConfigFactory
) -> None:
    bad = await write_bad_events(js_store)
    recorder, projector = await project_to_end(js_store, new_config(on_error="skip"))
    errors = await ProjectionReader(recorder).errors()
    assert [e.position for e in errors] == sorted(bad, reverse=True)
    by_position = {e.position: e for e in errors}
    assert by_position[bad[1]].session == "odd" and "mystery" in by_position[bad[1]].reason
    assert by_position[bad[2]].session == "huge"
    assert all(e.reason for e in errors)
    assert projector.halted is None
    last = await js_store.last_position()
    assert projector.positions == dict.fromkeys(projector.positions, last)
    listed = await ProjectionReader(recorder).list_sessions("alice")
    assert {s.session for s in listed.sessions} == {"good1", "good2"}
    views_only = await asyncio.to_thread(recorder.dump, ["sessions", "history", "usage"])
    assert "huge" not in views_only  # nothing half-applied
    await close(recorder)


async def test_halt_stops_at_the_bad_event_and_stays_there(
    js_store: JetStreamEventStore, new_config: ConfigFactory
) -> None:
    bad = await write_bad_events(js_store)
    config = new_config(on_error="halt")
    for _ in range(2):  # a restart halts at the same event again; nothing moves past it
        recorder, projector = await project_to_end(js_store, config, on_error="halt")
        assert projector.halted is not None and projector.halted.position == bad[0]
        assert projector.positions == dict.fromkeys(projector.positions, bad[0] - 1)
        reader = projector.reader
        assert not await reader.wait("sessions", bad[0], timeout=5)  # at once: halted
        assert [e.position for e in await reader.errors()] == [bad[0]]
        assert [s.session for s in (await reader.list_sessions("alice")).sessions] == ["good1"]
        await close(recorder)
    # Switched to skip, the same views carry on past all three.
    recorder, projector = await project_to_end(js_store, config, on_error="skip")
    assert projector.halted is None
    assert sorted(e.position for e in await ProjectionReader(recorder).errors()) == bad
    await close(recorder)
