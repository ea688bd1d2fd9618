"""Issue 12 item 2: a record is the session's and kind's its subject names, or it is corrupt.

A user message published raw with nats-py on ``<prefix>.s4.user_message`` whose
envelope says ``session=s1`` (the version and ``prev`` s1 would need next) belongs to
neither: s1's reads and the log's followers never see it, s4's reads step over it
(``entries`` shows it quarantined), and ``threadline verify`` names it.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from threadline.events import codec
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SCHEMA_VERSION, Envelope, SessionStarted, UserMessage
from threadline.events.store import NewEvent, Quarantined, Recorded
from threadline.events.verify import verify_session


async def test_a_record_under_another_sessions_subject_is_quarantined(
    js_store: JetStreamEventStore,
) -> None:
    [s1] = await js_store.append("s1", NewEvent(event=SessionStarted(owner="o")))
    await js_store.append("s4", NewEvent(event=SessionStarted(owner="o")))
    planted = Envelope(
        schema=SCHEMA_VERSION, session="s1", version=2, at=s1.envelope.at, actor="user:o",
        key="planted", prev=s1.hash, turn="t1", event=UserMessage(text="planted"),
    )  # fmt: skip
    js = js_store.nc.jetstream()
    ack = await js.publish(f"{js_store.prefix}.s4.user_message", msgspec.json.encode(planted))
    [real] = await js_store.append("s1", NewEvent(event=UserMessage(text="real"), turn="t2"))

    assert [r.version for r in await js_store.load("s1")] == [1, 2]
    assert [r.kind for r in await js_store.load("s4")] == ["session_started"]
    entries = [e async for e in js_store.entries("s4")]
    assert isinstance(entries[-1], Quarantined)
    assert (entries[-1].position, entries[-1].session, entries[-1].version) == (ack.seq, "s4", None)
    assert "disagrees with its subject" in entries[-1].reason
    assert (await js_store.head("s4")).version == 1

    messages = js_store.follow_all(kinds={"user_message"})
    async with contextlib.aclosing(messages):
        first = await asyncio.wait_for(anext(messages), 10)
    assert isinstance(first, Recorded) and first.position == real.position

    [later] = await js_store.append("s4", NewEvent(event=UserMessage(text="later"), turn="t3"))
    follower = js_store.follow("s4")  # steps over the quarantined record between them
    async with contextlib.aclosing(follower):
        followed = [await asyncio.wait_for(anext(follower), 10) for _ in range(2)]
    assert [r.position for r in followed] == [followed[0].position, later.position]
    assert followed[0].kind == "session_started"

    report = await verify_session(
        "s4", js_store.follow_raw([f"{js_store.prefix}.s4.*"], until_end=True)
    )
    assert [p.position for p in report.problems] == [ack.seq]
    assert codec.claimed_version(msgspec.json.encode(planted), "s4") is None
