"""The event store contract, as a base class every adapter's tests subclass.

An adapter's test module defines ``class TestMyStore(EventStoreContract)`` and implements
the three hooks: :meth:`~EventStoreContract.make_store` (a fresh, empty store; with a
``duplicate_window_s`` when given), :meth:`~EventStoreContract.another_client` (a second
handle on the same log, like another process) and :meth:`~EventStoreContract.pass_window`
(let a store's duplicate window go by). Every test below then runs on it.
(``tests/events/test_contract.py`` does this for the in-memory and the JetStream store.)
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.signing import independent_check, policy
from threadline.base.errors import (
    ConcurrencyError,
    InvalidSessionId,
    PayloadTooLarge,
    StoreError,
)
from threadline.events.codec import genesis_hash
from threadline.events.schema import SessionStarted, TextDelta, UserMessage
from threadline.events.signing import Signer, TrustPolicy
from threadline.events.store import (
    EventStore,
    NewEvent,
    Quarantined,
    Recorded,
    Stored,
    subject_for,
)
from threadline.events.verify import verify_session

#: the duplicate window the window tests use (short enough to wait out on a real server)
SHORT_WINDOW_S = 1.0
BAD_IDS = ["", "a.b", "a*", "a>", "has space", "tab\t", "x" * 65, "ü"]

StoreFactory = Callable[..., Awaitable[EventStore]]


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


async def versions(
    store: EventStore,
    session: str,
    *,
    from_version: int = 1,
    to_version: int | None = None,
    after: int = 0,
) -> list[int]:
    reading = store.read(session, from_version=from_version, to_version=to_version, after=after)
    return [r.version async for r in reading]


async def raw_pairs(records: list[Recorded]) -> AsyncIterator[Stored]:
    for rec in records:
        yield Stored(rec.position, subject_for("tl", rec.session, rec.kind), rec.raw)


class EventStoreContract(abc.ABC):
    """What every :class:`EventStore` adapter guarantees."""

    # ----------------------------------------------------------------- the hooks

    @abc.abstractmethod
    async def make_store(self, *, duplicate_window_s: float | None = None) -> EventStore:
        """A fresh, empty store (its own log)."""

    @abc.abstractmethod
    async def another_client(self, store: EventStore) -> EventStore:
        """Another handle on ``store``'s log: its own caches and locks."""

    @abc.abstractmethod
    async def pass_window(self, store: EventStore) -> None:
        """Return once ``store`` has forgotten the keys appended so far."""

    @abc.abstractmethod
    async def signed_client(
        self, store: EventStore, signer: Signer | None, trust: TrustPolicy | None
    ) -> EventStore:
        """Another handle on ``store``'s log that signs with ``signer`` and reads under
        ``trust`` (events/signing.py)."""

    # ----------------------------------------------------------------- fixtures

    @pytest.fixture
    async def stores(self) -> AsyncIterator[StoreFactory]:
        opened: list[EventStore] = []

        async def make(**options: float) -> EventStore:
            opened.append(await self.make_store(**options))
            return opened[-1]

        yield make
        for store in opened:
            await store.close()

    @pytest.fixture
    async def store(self, stores: StoreFactory) -> EventStore:
        return await stores()

    async def clients(self, store: EventStore, n: int) -> list[EventStore]:
        return [await self.another_client(store) for _ in range(n)]

    # ----------------------------------------------------------------- appends

    async def test_append_assigns_contiguous_versions_and_chains_hashes(
        self, store: EventStore
    ) -> None:
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

    async def test_read_returns_what_was_appended(self, store: EventStore) -> None:
        await store.append("s1", started("bob"))
        await store.append(
            "s1", NewEvent(event=UserMessage(text="hi", client_message_id="m1"), turn="t9")
        )
        records = await store.load("s1")
        assert records[0].event == SessionStarted(owner="bob", title="t")
        assert records[1].event == UserMessage(text="hi", client_message_id="m1")
        assert records[1].turn == "t9" and records[1].kind == "user_message"
        assert await store.load("nobody-here") == []

    async def test_sessions_are_independent(self, store: EventStore) -> None:
        await store.append("a", [started(), delta("1")])
        await store.append("b", started())
        assert [r.version for r in await store.load("a")] == [1, 2]
        assert [r.version for r in await store.load("b")] == [1]
        assert (await store.head("a")).version == 2
        assert (await store.head("empty")).version == 0

    async def test_positions_are_global_and_every_record_can_be_got(
        self, store: EventStore
    ) -> None:
        written = []
        for i in range(6):
            written += await store.append(f"s{i % 3}", delta(str(i)))
        assert [r.position for r in written] == sorted({r.position for r in written})
        for rec in written:
            assert (await store.get(rec.position)).raw == rec.raw
        assert await store.last_position() == written[-1].position
        head = await store.head("s2")
        assert (head.version, head.position, head.hash) == (
            2,
            written[-1].position,
            written[-1].hash,
        )
        with pytest.raises(StoreError):
            await store.get(written[-1].position + 1)

    # ----------------------------------------------------------------- concurrency

    async def test_expected_version_mismatch_raises_and_appends_nothing(
        self, store: EventStore
    ) -> None:
        await store.append("s1", [started(), delta("x")])
        with pytest.raises(ConcurrencyError) as info:
            await store.append("s1", delta("late"), expected_version=1)
        assert (info.value.expected, info.value.actual) == (1, 2)
        with pytest.raises(ConcurrencyError):
            await store.append("s1", started(), expected_version=0)
        assert [r.version for r in await store.load("s1")] == [1, 2]

    async def test_a_client_with_a_stale_head_conflicts_and_appends_nothing(
        self, store: EventStore
    ) -> None:
        [other] = await self.clients(store, 1)
        await store.append("s1", started(), expected_version=0)  # store caches version 1
        await other.append("s1", delta("theirs"), expected_version=1)
        with pytest.raises(ConcurrencyError) as info:
            await store.append("s1", delta("mine"), expected_version=1)
        assert info.value.actual == 2
        [landed] = await store.append("s1", delta("after"))  # any version: lands after
        assert landed.version == 3
        assert [r.event for r in await other.load("s1")][1:] == [
            TextDelta(text="theirs"),
            TextDelta(text="after"),
        ]

    async def test_a_client_that_never_saw_a_session_cannot_start_it_again(
        self, store: EventStore
    ) -> None:
        # a start assumes an empty session without reading its head: the store refuses
        [other] = await self.clients(store, 1)
        first = started()
        rec, _ = await store.append("s1", [first, delta("x")], expected_version=0)
        with pytest.raises(ConcurrencyError) as info:
            await other.append("s1", started(), expected_version=0)
        assert (info.value.expected, info.value.actual) == (0, 2)
        [again] = await other.append("s1", first, expected_version=0)  # a retry: recognised
        assert again.position == rec.position
        assert [r.version for r in await other.load("s1")] == [1, 2]
        await other.close()

    async def test_fifty_concurrent_writers_one_winner_per_version(self, store: EventStore) -> None:
        clients = [store, *await self.clients(store, 4)]
        await store.append("hot", started(), expected_version=0)
        target = 40
        winners: dict[int, int] = {}
        losses = 0

        async def writer(ident: int) -> None:
            nonlocal losses
            client = clients[ident % len(clients)]
            while True:
                head = await client.head("hot")
                if head.version >= target:
                    return
                await asyncio.sleep(0)  # let the others read the same head
                try:
                    [rec] = await client.append(
                        "hot", delta(f"w{ident}"), expected_version=head.version
                    )
                except ConcurrencyError:
                    losses += 1
                    continue
                assert rec.version not in winners, f"two winners for version {rec.version}"
                winners[rec.version] = ident

        await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(50))), 60)
        records = await store.load("hot")
        assert [r.version for r in records] == list(range(1, len(records) + 1))
        assert sorted(winners) == [r.version for r in records[1:]]
        assert losses > 0  # the writers really did race
        for rec in records[1:]:
            assert rec.event == TextDelta(text=f"w{winners[rec.version]}")
        for client in clients[1:]:
            await client.close()

    # ----------------------------------------------------------------- idempotency

    async def test_same_key_is_stored_once(self, store: EventStore) -> None:
        await store.append("s1", started())
        event = delta("once")
        results = [await store.append("s1", event) for _ in range(3)]
        assert {r[0].position for r in results} == {results[0][0].position}
        assert [r.event for r in await store.load("s1")].count(TextDelta(text="once")) == 1
        # a retry that still names the old expected version is recognised as the same event
        again = await store.append("s1", event, expected_version=1)
        assert again[0].position == results[0][0].position

    async def test_a_retry_through_another_client_is_recognised(self, store: EventStore) -> None:
        [other] = await self.clients(store, 1)
        await store.append("s1", started())
        event = delta("once")
        [first] = await store.append("s1", event, expected_version=1)
        await store.append("s1", delta("later"))
        for expected in (1, None):
            [again] = await other.append("s1", event, expected_version=expected)
            assert again.position == first.position
        assert [r.version for r in await store.load("s1")] == [1, 2, 3]
        await other.close()

    async def test_after_the_window_a_retry_with_its_expected_version_is_recognised(
        self, stores: StoreFactory
    ) -> None:
        """The duplicate window is gone, but a retry that names the version it expected
        is told apart from a conflict by the key stored since that version."""
        store = await stores(duplicate_window_s=SHORT_WINDOW_S)
        await store.append("s1", started())
        event = delta("once")
        [first] = await store.append("s1", event, expected_version=1)
        await store.append("s1", delta("later"))
        await self.pass_window(store)
        [again] = await store.append("s1", event, expected_version=1)
        assert again.position == first.position
        with pytest.raises(ConcurrencyError):  # a different event with that version conflicts
            await store.append("s1", delta("other"), expected_version=1)
        assert [r.version for r in await store.load("s1")] == [1, 2, 3]

    async def test_after_the_window_the_key_is_forgotten_by_appends_at_any_version(
        self, stores: StoreFactory
    ) -> None:
        """Without an expected version, only the window protects a retry: like
        JetStream, the store forgets keys after it (within it, see the test above)."""
        store = await stores(duplicate_window_s=SHORT_WINDOW_S)
        await store.append("s1", started())
        event = delta("twice")
        [first] = await store.append("s1", event)
        assert (await store.append("s1", event))[0].position == first.position
        await self.pass_window(store)
        [second] = await store.append("s1", event)
        assert second.position != first.position and second.version == 3

    # ----------------------------------------------------------------- bounded reads

    async def test_reads_are_bounded_by_versions(self, store: EventStore) -> None:
        await store.append("s", [started(), *(delta(str(i)) for i in range(29))])
        assert await versions(store, "s") == list(range(1, 31))
        cases = {
            (5, None): list(range(5, 31)),
            (30, None): [30],
            (31, None): [],
            (1, 1): [1],
            (5, 9): [5, 6, 7, 8, 9],
            (9, 5): [],
            (0, 3): [1, 2, 3],
            (-4, 2): [1, 2],
            (28, 99): [28, 29, 30],
        }
        for (start, end), expected in cases.items():
            got = await versions(store, "s", from_version=start, to_version=end)
            assert got == expected, (start, end)
        assert await versions(store, "empty", from_version=3) == []

    async def test_reads_after_a_position(self, store: EventStore) -> None:
        mine: list[Recorded] = []
        for i in range(12):
            mine += await store.append("s", delta(str(i)))
            await store.append("other", delta(str(i)))
        pos = {r.version: r.position for r in mine}
        assert await versions(store, "s", after=pos[9]) == [10, 11, 12]
        assert await versions(store, "s", after=pos[9] + 1) == [10, 11, 12]  # another's position
        assert await versions(store, "s", after=pos[9], from_version=11) == [11, 12]
        assert await versions(store, "s", after=pos[3], from_version=2, to_version=6) == [4, 5, 6]
        assert await versions(store, "s", after=pos[12]) == []
        assert await versions(store, "s", after=0) == list(range(1, 13))

    async def test_reads_find_every_version_among_other_sessions(self, store: EventStore) -> None:
        """Versions at irregular distances from each other (bursts of other sessions'
        events in between): every range is found exactly."""
        rng = random.Random(11)
        for i in range(60):
            await store.append("s", delta(str(i)))
            for _ in range(rng.choice([0, 0, 0, 1, 2, 7, 25])):
                await store.append(f"o{rng.randrange(3)}", delta("x"))
        records = await store.load("s")
        for k in range(1, 61):
            assert await versions(store, "s", from_version=k, to_version=k + 2) == [
                v for v in (k, k + 1, k + 2) if v <= 60
            ]
            if k > 1:
                after = records[k - 2].position
                assert await versions(store, "s", after=after, to_version=k) == [k]

    async def test_a_read_gives_what_is_stored_when_it_starts(self, store: EventStore) -> None:
        await store.append("s", [started(), delta("a"), delta("b")])
        async with contextlib.aclosing(store.read("s")) as reading:
            first = await anext(reading)
            await store.append("s", delta("c"))
            rest = [r.version async for r in reading]
        assert [first.version, *rest] == [1, 2, 3]

    async def test_a_long_read(self, store: EventStore) -> None:
        """More events than one batch of any adapter, between others' events."""
        for n in range(0, 1200, 100):
            await store.append("long", [delta(str(i)) for i in range(n, n + 100)])
            await store.append("other", delta("x"))
        assert await versions(store, "long") == list(range(1, 1201))
        assert await versions(store, "long", from_version=250, to_version=1150) == list(
            range(250, 1151)
        )

    # ----------------------------------------------------------------- following

    async def test_follow_replays_then_goes_live(self, store: EventStore) -> None:
        await store.append("s1", [started(), delta("a")])
        follower = asyncio.create_task(take(store.follow("s1"), 5))
        await store.append("other", started())
        await store.append("s1", [delta("b"), delta("c"), delta("d")])
        records = await asyncio.wait_for(follower, 10)
        assert [r.version for r in records] == [1, 2, 3, 4, 5]
        assert {r.session for r in records} == {"s1"}

    async def test_follow_after_a_position_resumes_without_gap_or_duplicate(
        self, store: EventStore
    ) -> None:
        written = await store.append("s1", [started(), delta("a"), delta("b"), delta("c")])
        resumed = await asyncio.wait_for(take(store.follow("s1", after=written[1].position), 2), 10)
        assert [r.version for r in resumed] == [3, 4]

    async def test_follow_waits_for_a_session_that_does_not_exist_yet(
        self, store: EventStore
    ) -> None:
        follower = asyncio.create_task(take(store.follow("later"), 2))
        await store.append("other", started())
        await store.append("later", [started(), delta("a")])
        assert [r.version for r in await asyncio.wait_for(follower, 10)] == [1, 2]

    async def test_followers_see_only_stored_appends(self, store: EventStore) -> None:
        """A refused append (conflict) and a duplicate never reach a follower."""
        await store.append("s", started())
        follower = asyncio.create_task(take(store.follow_all(), 3))
        event = delta("kept")
        await store.append("s", event)
        await store.append("s", event)  # a duplicate
        with pytest.raises(ConcurrencyError):
            await store.append("s", delta("refused"), expected_version=1)
        await store.append("s", delta("last"))
        got = await asyncio.wait_for(follower, 10)
        assert [r.event for r in got] == [
            SessionStarted(owner="alice", title="t"),
            TextDelta(text="kept"),
            TextDelta(text="last"),
        ]

    async def test_follow_all_filters_by_kind(self, store: EventStore) -> None:
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

    async def test_follow_all_resumes_after_a_position_in_position_order(
        self, store: EventStore
    ) -> None:
        written = []
        for i in range(6):
            written += await store.append(f"s{i % 2}", delta(str(i)))
        got = await asyncio.wait_for(take(store.follow_all(after=written[2].position), 3), 10)
        assert [r.position for r in got] == [r.position for r in written[3:]]

    # ----------------------------------------------------------------- ids and sizes

    @pytest.mark.parametrize("bad", BAD_IDS)
    async def test_bad_session_ids_are_refused(self, store: EventStore, bad: str) -> None:
        with pytest.raises(InvalidSessionId) as info:
            await store.append(bad, started())
        assert "session id" in str(info.value)
        for call in (
            lambda: store.head(bad),
            lambda: store.load(bad),
            lambda: anext(store.follow(bad)),
        ):
            with pytest.raises(InvalidSessionId):
                await call()
        assert await store.last_position() == 0

    async def test_oversize_events_are_refused_before_anything_lands(
        self, store: EventStore
    ) -> None:
        await store.append("s1", started())
        huge = NewEvent(event=TextDelta(text="x" * (store.max_event_bytes + 1)))
        with pytest.raises(PayloadTooLarge) as info:
            await store.append("s1", [delta("fine"), huge])
        assert "limit" in str(info.value)
        assert [r.version for r in await store.load("s1")] == [1]

    async def test_large_events_within_the_limit_round_trip(self, store: EventStore) -> None:
        text = "é" * (store.max_event_bytes // 4)
        [rec] = await store.append("s1", NewEvent(event=TextDelta(text=text)))
        [read] = await store.load("s1")
        assert read.event == TextDelta(text=text) and read.raw == rec.raw

    # ----------------------------------------------------------------- signed events

    async def test_signed_appends_check_by_the_documented_rule(self, store: EventStore) -> None:
        gateway, agent = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        trust = policy(gateway=(gateway, ("user:*",)), agent=(agent, ("agent:*",)))
        as_gateway = await self.signed_client(store, Signer(gateway), trust)
        as_agent = await self.signed_client(store, Signer(agent), trust)
        await as_gateway.append("s1", started(), expected_version=0)
        await as_agent.append("s1", delta("a"))
        reader = await self.signed_client(store, None, trust)
        records = [e async for e in reader.entries("s1")]
        assert all(isinstance(r, Recorded) for r in records) and len(records) == 2
        for rec, key in zip(records, (gateway, agent), strict=True):
            assert isinstance(rec, Recorded)
            assert independent_check(rec.raw, key.public_key()), rec.raw
            assert rec.envelope.sig is not None and rec.raw.endswith(b'"}')
        report = await verify_session("s1", raw_pairs(records), trust=trust)  # type: ignore[arg-type]
        assert report.ok, report.problems

    async def test_a_trusting_reader_quarantines_forged_records(self, store: EventStore) -> None:
        gateway, agent = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        trust = policy(gateway=(gateway, ("user:*",)), agent=(agent, ("agent:*",)))
        honest = await self.signed_client(store, Signer(gateway), trust)
        await honest.append("s1", started(), expected_version=0)
        forgers = {
            "not signed": await self.another_client(store),
            "the trust policy does not list": await self.signed_client(
                store, Signer(Ed25519PrivateKey.generate()), None
            ),
            "may not write a record of actor 'user:alice'": await self.signed_client(
                store, Signer(agent), None
            ),
        }
        for forger in forgers.values():  # the chain is the store's: recomputed, valid
            await forger.append(
                "s1", NewEvent(event=UserMessage(text="wire it"), actor="user:alice")
            )
        await honest.append("s1", NewEvent(event=UserMessage(text="hi"), actor="user:alice"))
        reader = await self.signed_client(store, None, trust)
        entries = [e async for e in reader.entries("s1")]
        assert [type(e).__name__ for e in entries] == ["Recorded", *["Quarantined"] * 3, "Recorded"]
        for entry, why in zip(entries[1:4], forgers, strict=True):
            assert isinstance(entry, Quarantined) and why in entry.reason, entry.reason
        assert [r.version for r in await reader.load("s1")] == [1, 5]
        unchecked = await verify_session("s1", stored_records(store, entries))
        assert unchecked.ok  # the chain alone cannot tell
        report = await verify_session("s1", stored_records(store, entries), trust=trust)
        assert [(p.position, p.version) for p in report.problems] == [
            (e.position, v) for e, v in zip(entries[1:4], (2, 3, 4), strict=True)
        ]
        assert all(p.reason.startswith("signature: ") for p in report.problems)
        with pytest.raises(StoreError):
            await reader.get(entries[1].position)
        followed = await take(reader.follow("s1"), 2)
        assert [r.version for r in followed] == [1, 5]


async def stored_records(
    store: EventStore, entries: list[Recorded | Quarantined]
) -> AsyncIterator[Stored]:
    """The entries as stored (each under its own kind's subject)."""
    for entry in entries:
        kind = json.loads(entry.raw)["event"]["kind"]
        yield Stored(entry.position, subject_for(store.prefix, "s1", kind), entry.raw)
