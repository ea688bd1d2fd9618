"""The event store contract: every test runs on the in-memory and the JetStream store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from threadline.base.errors import ConcurrencyError, InvalidSessionId, PayloadTooLarge
from threadline.events.codec import genesis_hash
from threadline.events.schema import SessionStarted, TextDelta, UserMessage
from threadline.events.store import EventStore, NewEvent, Recorded
from threadline.events.verify import verify_session


def started(owner: str = "alice") -> NewEvent:
    return NewEvent(event=SessionStarted(owner=owner, title="t"), actor=f"user:{owner}")


def delta(text: str, turn: str = "t1") -> NewEvent:
    return NewEvent(event=TextDelta(text=text), turn=turn, attempt=1, actor="agent:w")


async def take(it: AsyncIterator[Recorded], n: int) -> list[Recorded]:
    out: list[Recorded] = []
    async for rec in it:
        out.append(rec)
        if len(out) == n:
            break
    return out


async def raw_pairs(records: list[Recorded]) -> AsyncIterator[tuple[int, bytes]]:
    for rec in records:
        yield rec.position, rec.raw


async def test_append_assigns_contiguous_versions_and_chains_hashes(store: EventStore) -> None:
    first = await store.append("s1", started(), expected_version=0)
    more = await store.append("s1", [delta("a"), delta("b"), delta("c")], expected_version=1)
    records = await store.load("s1")
    assert [r.version for r in records] == [1, 2, 3, 4]
    assert [r.position for r in records] == [first[0].position] + [r.position for r in more]
    assert records[0].envelope.prev == genesis_hash("s1")
    for before, after in zip(records, records[1:], strict=False):
        assert after.envelope.prev == before.hash
        assert after.position > before.position
    report = await verify_session("s1", raw_pairs(records))
    assert report.ok and report.events == 4 and report.head_hash == records[-1].hash


async def test_read_returns_what_was_appended(store: EventStore) -> None:
    await store.append("s1", started("bob"))
    await store.append(
        "s1", NewEvent(event=UserMessage(text="hi", client_message_id="m1"), turn="t9")
    )
    records = await store.load("s1")
    assert records[0].event == SessionStarted(owner="bob", title="t")
    assert records[1].event == UserMessage(text="hi", client_message_id="m1")
    assert records[1].turn == "t9" and records[1].kind == "user_message"
    assert [r.version for r in [r async for r in store.read("s1", from_version=2)]] == [2]
    assert await store.load("nobody-here") == []


async def test_sessions_are_independent(store: EventStore) -> None:
    await store.append("a", [started(), delta("1")])
    await store.append("b", started())
    assert [r.version for r in await store.load("a")] == [1, 2]
    assert [r.version for r in await store.load("b")] == [1]
    assert (await store.head("a")).version == 2
    assert (await store.head("empty")).version == 0


async def test_expected_version_mismatch_raises_and_appends_nothing(store: EventStore) -> None:
    await store.append("s1", [started(), delta("x")])
    with pytest.raises(ConcurrencyError) as info:
        await store.append("s1", delta("late"), expected_version=1)
    assert info.value.actual == 2
    with pytest.raises(ConcurrencyError):
        await store.append("s1", started(), expected_version=0)
    assert [r.version for r in await store.load("s1")] == [1, 2]


async def test_same_key_is_stored_once(store: EventStore) -> None:
    await store.append("s1", started())
    event = delta("once")
    results = [await store.append("s1", event) for _ in range(3)]
    assert {r[0].position for r in results} == {results[0][0].position}
    assert [r.event for r in await store.load("s1")].count(TextDelta(text="once")) == 1
    # a retry that still names the old expected version is recognised as the same event
    again = await store.append("s1", event, expected_version=1)
    assert again[0].position == results[0][0].position


async def test_follow_replays_then_goes_live(store: EventStore) -> None:
    await store.append("s1", [started(), delta("a")])
    follower = asyncio.create_task(take(store.follow("s1"), 5))
    await store.append("other", started())
    await store.append("s1", [delta("b"), delta("c"), delta("d")])
    records = await asyncio.wait_for(follower, 10)
    assert [r.version for r in records] == [1, 2, 3, 4, 5]
    assert {r.session for r in records} == {"s1"}


async def test_follow_after_a_position_resumes_without_gap_or_duplicate(store: EventStore) -> None:
    written = await store.append("s1", [started(), delta("a"), delta("b"), delta("c")])
    resumed = await take(store.follow("s1", after=written[1].position), 2)
    assert [r.version for r in resumed] == [3, 4]


async def test_follow_all_filters_by_kind(store: EventStore) -> None:
    await store.append("a", [started(), delta("x")])
    await store.append("b", [started(), NewEvent(event=UserMessage(text="q"), turn="t")])
    got = await asyncio.wait_for(
        take(store.follow_all(kinds={"session_started", "user_message"}), 3), 10
    )
    assert [(r.session, r.kind) for r in got] == [
        ("a", "session_started"),
        ("b", "session_started"),
        ("b", "user_message"),
    ]
    assert await store.last_position() == got[-1].position


@pytest.mark.parametrize("bad", ["", "a.b", "a*", "a>", "has space", "tab\t", "x" * 65, "ü"])
async def test_bad_session_ids_are_refused(store: EventStore, bad: str) -> None:
    with pytest.raises(InvalidSessionId) as info:
        await store.append(bad, started())
    assert "session id" in str(info.value)
    assert await store.last_position() == 0


async def test_oversize_events_are_refused_before_anything_lands(store: EventStore) -> None:
    await store.append("s1", started())
    huge = NewEvent(event=TextDelta(text="x" * (store.max_event_bytes + 1)))
    with pytest.raises(PayloadTooLarge) as info:
        await store.append("s1", [delta("fine"), huge])
    assert "limit" in str(info.value)
    assert [r.version for r in await store.load("s1")] == [1]
