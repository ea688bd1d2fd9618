"""The hub's one upstream follow of the log: shared by every session's clients, no
consumer per stream, stopped once idle and started again by the next client."""

from __future__ import annotations

import contextlib

from tests.gateway.harness import Harness, agent_turn, open_stream
from threadline.events.ids import new_id
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import UserMessage
from threadline.events.store import NewEvent
from threadline.services.gateway.hub import Hub
from threadline.services.runtime.natsserver import EmbeddedNats


async def _consumers(gw: Harness) -> int:
    info = await gw.store.nc.jetstream().stream_info(gw.store.settings.name)
    return info.state.consumer_count


async def test_streams_on_more_sessions_start_no_consumer_on_the_server(gw: Harness) -> None:
    sessions = [await gw.new_session() for _ in range(4)]
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_stream(gw.alice, sessions[0]))
        await first.events(count=1)  # the upstream is running
        consumers = await _consumers(gw)
        more = [await stack.enter_async_context(open_stream(gw.alice, s)) for s in sessions[1:]]
        for stream in more:  # (kept referenced: a reader collected early closes its stream)
            [started], _ = await stream.events(count=1)
            assert started.event == "session_started"
        assert gw.gateway.hub.upstreams == 4
        assert await _consumers(gw) == consumers


async def _append(store: MemoryEventStore, session: str, version: int) -> None:
    new = NewEvent(event=UserMessage(text="hi"), actor="test", key=new_id())
    await store.append(session, new, expected_version=version)


async def test_the_upstream_stops_once_idle_and_the_next_client_starts_it_again() -> None:
    store = MemoryEventStore()
    hub = Hub(store, buffer=8, tick_s=0.01, idle_s=0.05)
    hub.start()
    try:
        one, other = new_id(), new_id()
        await _append(store, other, 0)  # before the follow: not live, never offered
        sub, live_from = await hub.join(one)
        assert hub.following and live_from == await store.last_position()
        await _append(store, other, 1)  # another session's event: not offered to `one`
        await _append(store, one, 0)
        frames = await sub.take()
        assert frames is not None and [f.kind for f in frames] == ["user_message"]
        assert frames[0].envelope.session == one and frames[0].position > live_from
        hub.leave(one, sub)
        await hub.settled(lambda: not hub.following, timeout_s=5)
        assert hub.follows_started == 1
        sub, live_from = await hub.join(one)
        assert hub.following and hub.follows_started == 2
        assert live_from == await store.last_position()
    finally:
        await hub.close()


async def test_what_the_hub_follows_keeps_the_session_states_current(
    gw: Harness, nats_server: EmbeddedNats
) -> None:
    """The agent's events, seen on their way to the stream, are folded into the
    gateway's session state at its next read (tests/gateway/test_followed_sessions.py
    counts what that read reads)."""
    agent = await JetStreamEventStore.connect(nats_server.url, gw.store.settings, heartbeat_s=0.5)
    try:
        session = await gw.new_session()
        async with open_stream(gw.alice, session) as stream:
            posted = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "hi"})
            turn = await agent_turn(agent, session, posted.json()["turn_id"])
            await stream.events(until=turn[-1].position)  # the hub has followed them
            state = await gw.gateway.sessions.get(session)
            assert (state.version, state.position) == (turn[-1].version, turn[-1].position)
    finally:
        await agent.close()


async def test_a_client_with_everything_since_the_follow_started_needs_no_replay() -> None:
    store = MemoryEventStore()
    hub = Hub(store, buffer=8, tick_s=0.01)
    hub.start()
    try:
        one, other = new_id(), new_id()
        await _append(store, one, 0)
        before = await store.last_position()  # one's event, before the follow started
        first, start = await hub.join(other)
        assert start == before
        # from before the follow started: what came before it is not known here
        sub, live_from = await hub.join(one, after=before - 1)
        assert live_from == start
        hub.leave(one, sub)
        await _append(store, other, 0)
        await first.take()  # the upstream has followed it
        # nothing of `one` since `before`: nothing to read from the store
        sub, live_from = await hub.join(one, after=before)
        assert live_from == before < await store.last_position()
        hub.leave(one, sub)
        await _append(store, one, 1)
        await _append(store, other, 1)
        await first.take()
        mine = (await store.head(one)).position
        # `one` has an event after `before`: it is read from the store up to live_from
        sub, live_from = await hub.join(one, after=before)
        assert live_from == await store.last_position() > mine
        hub.leave(one, sub)
        sub, live_from = await hub.join(one, after=mine)
        assert live_from == mine
    finally:
        await hub.close()
