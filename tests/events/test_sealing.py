"""Crypto-shredding (issue 14 item 4): personal content sealed per owner and month,
erased by destroying the key; the chain still verifies. Both stores, a real
nats-server for the log's erasure records and a second process's cache."""

from __future__ import annotations

import asyncio
import contextlib
import os
import typing
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from tests.conftest import fresh_stream
from threadline.events import schema as ev
from threadline.events.erasure import erase, erasure_subject, follow_erasures
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.events.sealing import (
    ERASED,
    PERSONAL,
    DirectoryKeyStore,
    Keyring,
    period_of,
)
from threadline.events.sessions import SessionCache
from threadline.events.snapshots import MemorySnapshots
from threadline.events.store import EventStore, NewEvent
from threadline.events.verify import verify_session

MARKER = "zebra-quartz-7731"

#: fields of each kind that are not personal: ids, names of tools/providers, counts
NOT_PERSONAL = {
    "owner", "provider", "model", "tool_servers", "call_id", "tool", "server", "turn_id",
    "worker", "client_message_id", "fallback", "from_", "to", "through_turn", "error",
    "finish_reason", "double_texting", "approval",
}  # fmt: skip


def test_every_text_field_of_every_kind_is_classified() -> None:
    """A new kind or field carrying text must be named personal or not, here."""
    for cls in ev.EVENT_TYPES:
        hints = typing.get_type_hints(cls)
        for name in cls.__struct_fields__:
            shown = str(hints[name])
            if not any(t in shown for t in ("str", "dict", "ToolCallRef")):
                continue
            personal = name in PERSONAL.get(cls, {})
            assert personal or name in NOT_PERSONAL, f"{cls.__name__}.{name} is not classified"


def conversation() -> list[NewEvent]:
    call = ev.ToolCallRef(call_id="c1", tool="echo", arguments={"q": MARKER})
    started = ev.TurnStarted(turn_id="t1", attempt=1, provider="dev", model="m")
    answer = ev.AssistantMessage(text=f"answer {MARKER}", reasoning=MARKER, tool_calls=(call,))
    return [
        NewEvent(event=ev.SessionStarted(owner="alice", title=f"t {MARKER}", system_prompt=MARKER)),
        NewEvent(event=ev.UserMessage(text=f"hello {MARKER}"), actor="user:alice", turn="t1"),
        NewEvent(event=started, turn="t1"),
        NewEvent(event=ev.ReasoningDelta(text=MARKER), turn="t1", attempt=1),
        NewEvent(event=ev.ToolCall(call_id="c1", tool="echo", arguments={"q": MARKER}), turn="t1"),
        NewEvent(event=ev.ToolResult(call_id="c1", content=MARKER), turn="t1", attempt=1),
        NewEvent(event=answer, turn="t1", attempt=1),
        NewEvent(event=ev.TurnCompleted(), turn="t1", attempt=1),
    ]  # fmt: skip


@pytest.fixture(params=["memory", "jetstream"])
async def sealed_store(
    request: pytest.FixtureRequest, nats_url: str, tmp_path: Path
) -> AsyncIterator[EventStore]:
    store: EventStore
    if request.param == "memory":
        store = MemoryEventStore()
    else:
        store = await JetStreamEventStore.connect(nats_url, fresh_stream(), heartbeat_s=0.5)
    store.keyring = Keyring(DirectoryKeyStore(tmp_path / "keys"))
    yield store
    await store.close()


async def stored_bytes(store: EventStore, session: str) -> list[bytes]:
    return [r.raw for r in await store.load(session)]


async def test_sealed_round_trip_and_erasure(sealed_store: EventStore) -> None:
    store, keyring = sealed_store, sealed_store.keyring
    assert keyring is not None
    appended = await store.append("s-seal", conversation())
    written = [n.event for n in conversation()]
    # what append returns and what is read back: the content itself
    assert [r.event for r in appended] == written
    assert [r.event for r in await store.load("s-seal")] == written
    # what is stored: no content, every personal field sealed
    raw = await stored_bytes(store, "s-seal")
    assert not any(MARKER.encode() in data for data in raw)
    assert [r.envelope.sealed is not None for r in appended] == [
        True, True, False, True, True, True, True, False,
    ]  # fmt: skip
    assert (await verify_session("s-seal", _stored(store, "s-seal"))).ok

    record = (await erase(store, keyring, owner="alice")).record
    assert len(record.keys) == 1 and "alice" not in msgspec.json.encode(record).decode()
    after = await store.load("s-seal")
    assert [r.raw for r in after] == raw  # nothing in the log changed
    assert after[0].event == ev.SessionStarted(owner="alice", title=ERASED, system_prompt=ERASED)
    assert after[1].event == ev.UserMessage(text=ERASED)
    message = after[6].event
    assert isinstance(message, ev.AssistantMessage)
    assert (message.text, message.reasoning) == (ERASED, ERASED)
    assert message.tool_calls[0].arguments == {ERASED: True}
    assert after[2].event == written[2]  # nothing personal: as written
    assert MARKER not in repr([r.envelope for r in after])
    assert (await verify_session("s-seal", _stored(store, "s-seal"))).ok

    # the owner writes on: a new key, readable; the erased content stays erased
    more = await store.append("s-seal", NewEvent(event=ev.UserMessage(text="again"), turn="t2"))
    assert more[0].envelope.sealed is not None
    assert more[0].envelope.sealed.key not in record.keys
    assert [r.event for r in await store.load("s-seal")][-2:] == [
        ev.TurnCompleted(),
        ev.UserMessage(text="again"),
    ]


async def _stored(store: EventStore, session: str) -> AsyncIterator:  # type: ignore[type-arg]
    from threadline.events.store import Stored, subject_for

    for rec in await store.load(session):
        yield Stored(rec.position, subject_for(store.prefix, session, rec.kind), rec.raw)


async def test_sealing_off_writes_in_the_clear_and_still_reads_sealed(tmp_path: Path) -> None:
    store = MemoryEventStore()
    store.keyring = Keyring(DirectoryKeyStore(tmp_path / "keys"))
    await store.append("s-1", conversation()[:2])
    store.keyring.enabled = False
    await store.append("s-1", NewEvent(event=ev.UserMessage(text=MARKER)))
    recs = await store.load("s-1")
    assert [r.envelope.sealed is None for r in recs] == [False, False, True]
    assert MARKER.encode() in recs[2].raw
    assert recs[1].event == ev.UserMessage(text=f"hello {MARKER}")


async def test_retention_by_month(tmp_path: Path) -> None:
    keys = DirectoryKeyStore(tmp_path / "keys")
    old, new = keys.get_or_create("alice", "2026-01"), keys.get_or_create("alice", "2026-03")
    bob = keys.get_or_create("bob", "2026-02")
    keyring = Keyring(keys)
    assert await keyring.erase(before="2026-03") == sorted([old.id, bob.id])
    assert keys.load(new.id) == new.secret and keys.load(old.id) is None
    assert keyring.reader_key(old.id) is None
    assert period_of(1_767_225_600_000_000) == "2026-01"  # 2026-01-01T00:00:00Z


def test_directory_key_store_deletes_for_real(tmp_path: Path) -> None:
    keys = DirectoryKeyStore(tmp_path / "keys")
    first = keys.get_or_create("alice", "2026-05")
    assert keys.get_or_create("alice", "2026-05") == first  # one key per owner and month
    again = DirectoryKeyStore(tmp_path / "keys")  # another process sharing the directory
    assert again.get_or_create("alice", "2026-05") == first
    assert again.load(first.id) == first.secret
    path = tmp_path / "keys" / f"{first.id}.key"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "keys").stat().st_mode & 0o777) == "0o700"
    assert keys.erase(owner="alice") == [first.id]
    assert not path.exists() and keys.load(first.id) is None and again.load(first.id) is None
    fresh = again.get_or_create("alice", "2026-05")
    assert fresh.id != first.id and fresh.secret != first.secret
    assert first.secret.hex().encode() not in b"".join(
        p.read_bytes() for p in (tmp_path / "keys").iterdir()
    )
    assert "alice" not in " ".join(os.listdir(tmp_path / "keys"))


async def test_a_second_process_stops_reading_after_the_erasure_record(
    nats_url: str, tmp_path: Path
) -> None:
    """Two processes share the key directory; the second one holds the key in its cache
    and drops it when it sees the erasure record in the log."""
    stream = fresh_stream()
    one = await JetStreamEventStore.connect(nats_url, stream, heartbeat_s=0.5)
    two = await JetStreamEventStore.connect(nats_url, stream, heartbeat_s=0.5)
    one.keyring = Keyring(DirectoryKeyStore(tmp_path / "keys"))
    two.keyring = Keyring(DirectoryKeyStore(tmp_path / "keys"))
    forgotten = asyncio.Event()
    two.keyring.on_forget.append(lambda ids: forgotten.set())
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(one.close)
        stack.push_async_callback(two.close)
        follower = asyncio.create_task(follow_erasures(two, two.keyring), name="erasures")
        stack.push_async_callback(_stopped, follower)
        await one.append("s-two", conversation()[:2])
        assert (await two.load("s-two"))[1].event == ev.UserMessage(text=f"hello {MARKER}")
        # the key file is gone, but the second process still has the key cached
        record, position = await erase(one, one.keyring, owner="alice")
        assert position > 0
        await asyncio.wait_for(forgotten.wait(), 10)
        assert (await two.load("s-two"))[1].event == ev.UserMessage(text=ERASED)
        # the record names key ids only
        raw = one.follow_raw([erasure_subject(one.prefix)], until_end=True)
        async with contextlib.aclosing(raw) as records:
            data = [item.data async for item in records]
        assert len(data) == 1 and b"alice" not in data[0] and MARKER.encode() not in data[0]
        assert msgspec.json.decode(data[0])["keys"] == list(record.keys)


async def test_snapshots_are_sealed_and_unreadable_once_erased(tmp_path: Path) -> None:
    """Snapshots fold content: sealed under the owner's key of the session's first month;
    after the erasure a cold cache cannot use it and folds the log (erased) instead, and
    every cached state is dropped."""
    store = MemoryEventStore()
    store.keyring = keyring = Keyring(DirectoryKeyStore(tmp_path / "keys"))
    snapshots = MemorySnapshots()
    await store.append("s-snap", conversation())
    warm = SessionCache(store, snapshots=snapshots, snapshot_every=1)
    state = await warm.get("s-snap")
    await warm.flush()
    assert snapshots.saved == 1 and state.title == f"t {MARKER}"
    assert MARKER.encode() not in snapshots.data["s-snap"]
    cold = SessionCache(store, snapshots=snapshots)
    await cold.get("s-snap")
    assert cold.stats.snapshots_loaded == 1  # sealed, and read back with the key

    await erase(store, keyring, owner="alice")
    assert "s-snap" not in warm  # dropped with the keys
    again = SessionCache(store, snapshots=snapshots)
    erased = await again.get("s-snap")
    assert again.stats.snapshots_loaded == 0 and erased.title == ERASED
    assert MARKER not in repr(erased)


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
