"""Issue 12 item 7: a record no reader can use does not make its session unusable.

Garbage bytes and a record of a newer schema (as a writer on a newer build writes during a
rolling upgrade) are published raw with nats-py into a session's subjects. The session
keeps serving: posting, ``?at=``, fork, SSE and the AI SDK's stream work, its history
shows each such record as ``quarantined`` (position and why), the export carries its
raw bytes, and ``threadline_events_quarantined_total`` counts it.
"""

from __future__ import annotations

import base64
import json
import time

from tests.gateway.harness import Harness, agent_turn, open_stream
from threadline.events.store import QUARANTINED

GARBAGE = b"\x00\xffnot a record"


def newer(session: str, version: int) -> bytes:
    """A record of schema 99 (this build reads schema 1) in a kind it does not know."""
    return json.dumps(
        {
            "schema": 99, "session": session, "version": version,
            "at": time.time_ns() // 1000, "actor": "newer", "key": "newer-1",
            "prev": "0" * 64, "event": {"kind": "hologram", "depth": 3},
        }
    ).encode()  # fmt: skip


async def poison(gw: Harness) -> tuple[str, list[int], int]:
    """A session with one answered turn, then a newer-schema record and garbage at its
    head (garbage has no version: the head's is the newer record's). Returns the
    session, the bad records' positions and that version."""
    session = await gw.new_session()
    posted = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "first"})
    assert posted.status_code == 202, posted.text
    await agent_turn(gw.store, session, posted.json()["turn_id"])
    version = await gw.version(session) + 1
    js, prefix = gw.store.nc.jetstream(), gw.store.prefix
    acks = [
        await js.publish(f"{prefix}.{session}.user_message", newer(session, version)),
        await js.publish(f"{prefix}.{session}.text_delta", GARBAGE),
    ]
    return session, [ack.seq for ack in acks], version


async def test_a_session_with_unreadable_records_keeps_serving(gw: Harness) -> None:
    counted = QUARANTINED.value()
    session, bad, version = await poison(gw)

    posted = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "again"})
    assert posted.status_code == 202, posted.text
    assert posted.json()["version"] == version + 1
    assert posted.json()["position"] > bad[-1]

    detail = await gw.alice.get(f"/v1/sessions/{session}")
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert [q["position"] for q in body["quarantined"]] == bad
    assert "schema 99" in body["quarantined"][0]["reason"]
    assert [m["text"] for m in body["messages"] if m["role"] == "user"] == ["first", "again"]
    assert body["version"] == version + 1

    at = await gw.alice.get(f"/v1/sessions/{session}", params={"at": version})
    assert at.status_code == 200, at.text
    assert [q["position"] for q in at.json()["quarantined"]] == bad[:1]

    fork = await gw.alice.post(f"/v1/sessions/{session}/fork", json={"version": version + 1})
    assert fork.status_code == 201, fork.text

    async with open_stream(gw.alice, session) as reader:
        events, _ = await reader.events(until=posted.json()["position"])
    positions = [e.id for e in events]
    assert positions[-1] == posted.json()["position"]
    assert not set(bad) & set(positions)

    async with gw.alice.stream("GET", f"/api/chat/{session}/stream") as chat:
        assert chat.status_code == 200  # the pending turn's stream (it waits for the agent)
        assert b'"type":"start"' in await anext(chat.aiter_bytes())

    export = await gw.alice.get(f"/v1/sessions/{session}/export")
    assert export.status_code == 200, export.text
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [line["position"] for line in lines if "record" in line][-1] == posted.json()["position"]
    raw = {line["position"]: line for line in lines if "quarantined" in line}
    assert sorted(raw) == bad
    assert base64.b64decode(raw[bad[1]]["raw"]) == GARBAGE
    assert json.loads(base64.b64decode(raw[bad[0]]["raw"]))["schema"] == 99

    assert QUARANTINED.value() > counted
    metrics = await gw.root.get("/metrics")
    assert "threadline_events_quarantined_total" in metrics.text
