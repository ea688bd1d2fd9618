"""The gateway's session cache (context.FollowedSessions): records the hub followed for
a cached session are folded at its next get, which then reads none of them from the
store; forgotten when the session's last stream ends. Reads are counted by a store that
counts what they yield (tests/events/test_sessions.CountingStore, not a mock)."""

from __future__ import annotations

from tests.events.test_sessions import CountingStore, start, whole
from threadline.events.schema import UserMessage
from threadline.events.store import NewEvent, Recorded
from threadline.services.gateway.context import FollowedSessions


async def _agent_turn(store: CountingStore, session: str, n: int) -> list[Recorded]:
    agent = store.another_client()  # another process on the same log
    new = [NewEvent(event=UserMessage(text=str(i)), turn=f"t{i}") for i in range(n)]
    return await agent.append(session, new)


async def _followed_turn() -> tuple[CountingStore, FollowedSessions]:
    """Session s1, cached here, and an agent's turn of three records the hub followed."""
    store = CountingStore()
    cache = FollowedSessions(store)
    await start(store, "s1")
    await cache.get("s1")
    for rec in await _agent_turn(store, "s1", 3):
        cache.followed(rec)
    return store, cache


async def test_followed_records_are_folded_at_the_next_get_without_reading_them() -> None:
    store, cache = await _followed_turn()
    store.reads()
    state = await cache.get("s1")
    assert store.reads() == 0 and state == await whole(store, "s1") and state.version == 4


async def test_forgotten_or_uncached_sessions_are_read_from_the_store() -> None:
    store, cache = await _followed_turn()
    cache.forget_followed("s1")  # its last stream ended
    store.reads()
    state = await cache.get("s1")
    assert store.reads() == 3 and state == await whole(store, "s1")
    await start(store, "s2")
    for rec in await _agent_turn(store, "s2", 2):
        cache.followed(rec)  # not cached here: not kept
    store.reads()
    assert (await cache.get("s2")).version == 3 and store.reads() == 3
