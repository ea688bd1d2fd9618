"""Server-Sent Events: replay, live, resume without gap or duplicate, filters, heartbeats,
one upstream per session, slow clients, per-owner caps."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from tests.gateway.harness import (
    Harness,
    agent_turn,
    gateway_options,
    make_jwt,
    open_stream,
    running_gateway,
)
from threadline.events.schema import TextDelta
from threadline.events.store import NewEvent
from threadline.services.runtime.natsserver import EmbeddedNats


def events_url(session: str) -> str:
    return f"/v1/sessions/{session}/events"


async def session_with_turn(gw: Harness) -> str:
    session = await gw.new_session()
    turn = (await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "hi"})).json()
    await agent_turn(gw.store, session, turn["turn_id"], tool=True)
    return session


async def positions(gw: Harness, session: str) -> list[int]:
    return [r.position for r in await gw.store.load(session)]


async def test_replay_then_live_is_exactly_the_stored_stream(gw: Harness) -> None:
    session = await session_with_turn(gw)
    stored = await gw.store.load(session)
    async with open_stream(gw.alice, session) as stream:
        replayed, blocks = await stream.events(until=stored[-1].position)
        assert blocks[0].retry == 1000  # the stream opens with the retry hint
        assert [(e.id, e.event) for e in replayed] == [(r.position, r.kind) for r in stored]
        assert [e.data for e in replayed] == [r.raw.decode() for r in stored]

        turn = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "2"})
        live_turn = await agent_turn(gw.store, session, turn.json()["turn_id"])
        live, _ = await stream.events(until=live_turn[-1].position)
    assert [e.id for e in replayed + live] == await positions(gw, session)


async def test_resume_after_a_mid_stream_disconnect_has_no_gap_and_no_duplicate(
    gw: Harness,
) -> None:
    session = await session_with_turn(gw)
    async with open_stream(gw.alice, session) as stream:
        first, _ = await stream.events(count=3)
    # disconnected: the session moves on meanwhile
    turn = (await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "more"})).json()
    await agent_turn(gw.store, session, turn["turn_id"], deltas=("a", "b", "c"))
    final = (await positions(gw, session))[-1]
    resume = {"Last-Event-ID": str(first[-1].id)}
    # Last-Event-ID wins over ?after=
    async with open_stream(gw.alice, session, headers=resume, params={"after": 0}) as stream:
        rest, _ = await stream.events(until=final)
    assert [e.id for e in first + rest] == await positions(gw, session)

    middle = first[1].id
    async with open_stream(gw.alice, session, params={"after": middle}) as stream:
        tail, _ = await stream.events(until=final)
    assert [e.id for e in tail] == [p for p in await positions(gw, session) if p > middle]


async def test_joining_mid_burst_replays_then_goes_live_without_gap(gw: Harness) -> None:
    """A client resuming from an old position while the session is streaming live."""
    session = await session_with_turn(gw)
    older = (await positions(gw, session))[1]
    burst = 300
    async with open_stream(gw.alice, session) as watcher:  # keeps the feed live
        await watcher.events(count=1)

        async def writer() -> None:
            for i in range(burst):
                await gw.store.append(session, NewEvent(event=TextDelta(text=f"{i} ")))

        task = asyncio.create_task(writer())
        results = []
        for _ in range(3):  # join at different moments of the burst
            async with open_stream(gw.alice, session, params={"after": older}) as stream:
                results.append(await stream.events(count=60))
        await task
        final = (await positions(gw, session))[-1]
        async with open_stream(gw.alice, session, params={"after": older}) as late:
            results.append(await late.events(until=final))
    stored = [p for p in await positions(gw, session) if p > older]
    for events, _ in results:
        ids = [e.id for e in events]
        assert ids == stored[: len(ids)], "gap or duplicate at the replay/live boundary"


async def test_kind_filters(gw: Harness) -> None:
    session = await session_with_turn(gw)
    stored = await gw.store.load(session)
    final = stored[-1].position
    wanted = {"user_message", "assistant_message"}
    params = {"kinds": ["user_message", "assistant_message"]}
    last_wanted = max(r.position for r in stored if r.kind in wanted)
    async with open_stream(gw.alice, session, params=params) as stream:
        picked, _ = await stream.events(until=last_wanted)
    assert [e.id for e in picked] == [r.position for r in stored if r.kind in wanted]
    async with open_stream(gw.alice, session, params={"exclude": "text_delta"}) as stream:
        rest, _ = await stream.events(until=final)
    assert [e.event for e in rest] == [r.kind for r in stored if r.kind != "text_delta"]


async def test_two_clients_share_one_upstream_follow_which_stops_when_they_leave(
    gw: Harness,
) -> None:
    hub = gw.gateway.hub
    session = await session_with_turn(gw)
    final = (await positions(gw, session))[-1]
    started = hub.feeds_started
    async with contextlib.AsyncExitStack() as stack:
        one = await stack.enter_async_context(open_stream(gw.alice, session))
        two = await stack.enter_async_context(open_stream(gw.root, session))
        await one.events(until=final)
        await two.events(until=final)
        assert hub.has_upstream(session) and hub.clients(session) == 2
        assert hub.feeds_started == started + 1
        turn = (await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "x"})).json()
        live = await agent_turn(gw.store, session, turn["turn_id"])
        got_one, _ = await one.events(until=live[-1].position)
        got_two, _ = await two.events(until=live[-1].position)
        expected = [p for p in await positions(gw, session) if p > final]
        assert [e.id for e in got_one] == [e.id for e in got_two] == expected
        assert hub.feeds_started == started + 1
    await hub.settled(lambda: not hub.has_upstream(session))
    assert hub.clients(session) == 0


async def test_per_owner_cap_answers_429(gw: Harness) -> None:
    session = await gw.new_session(gw.client("carol-token"))
    carol = gw.client("carol-token")
    limiter = gw.gateway.limiter
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(4):
            await stack.enter_async_context(open_stream(carol, session))
        refused = await carol.get(events_url(session))
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "too_many_streams"
        assert refused.headers["retry-after"]
        assert (await gw.alice.get("/v1/sessions")).status_code == 200  # others unaffected
    await gw.gateway.hub.settled(lambda: limiter.count("carol") == 0)
    async with open_stream(carol, session):
        pass


async def test_idle_streams_get_heartbeats_and_shutdown_ends_them(
    nats_server: EmbeddedNats,
) -> None:
    options = gateway_options(heartbeat_s=0.2)
    async with running_gateway(nats_server.url, options) as gw:
        session = await gw.new_session()
        async with open_stream(gw.alice, session) as stream:
            blocks = stream.blocks()
            async with asyncio.timeout(10):
                async for block in blocks:
                    if "ping" in block.comments:
                        break
                gw.gateway.end_streams()
                ending = [block async for block in blocks]
    assert ending[-1].retry == 1000
    assert any("stream ended" in c for c in ending[-1].comments)


async def _raw_stalled_client(
    url: str, session: str, after: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An SSE client with a tiny receive buffer that reads the headers, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(
        f"GET {events_url(session)}?after={after} HTTP/1.1\r\nHost: {host}\r\n"
        "Authorization: Bearer alice-token\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    while (await reader.readline()) != b"\r\n":
        pass
    return reader, writer


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    async with asyncio.timeout(30):
        while size := int((await reader.readline()).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return bytes(body)


async def test_a_slow_client_is_cut_off_without_delaying_a_fast_one(
    nats_server: EmbeddedNats,
) -> None:
    async with running_gateway(nats_server.url, gateway_options(sse_buffer=8)) as gw:
        session = await gw.new_session()
        head = (await gw.store.head(session)).position
        reader, writer = await _raw_stalled_client(gw.url, session, head)
        try:
            await _cut_off_scenario(gw, session, head, reader)
        finally:
            writer.close()
            await writer.wait_closed()


async def _cut_off_scenario(
    gw: Harness, session: str, head: int, reader: asyncio.StreamReader
) -> None:
    hub, big = gw.gateway.hub, "x" * 64_000
    await hub.settled(lambda: hub.clients(session) == 1)
    appended = []
    async with open_stream(gw.alice, session, params={"after": head}) as fast:
        for _ in range(30):  # ~9.6 MB: more than the stalled socket's buffers can hide
            batch = await gw.store.append(
                session, [NewEvent(event=TextDelta(text=big)) for _ in range(5)]
            )
            got, _ = await fast.events(until=batch[-1].position)
            # the fast client keeps getting everything, at once, whatever the slow one does
            assert [e.id for e in got] == [r.position for r in batch]
            appended += batch
        assert gw.gateway.metrics.slow_clients_cut.value() == 1
        assert hub.clients(session) == 1

    # the slow client finally reads: a gap-free prefix, then the retry hint, then the end
    text = (await _read_chunked(reader)).decode()
    ids = [int(line[4:]) for line in text.split("\n") if line.startswith("id: ")]
    positions = [r.position for r in appended]
    assert ids == positions[: len(ids)] and len(ids) < len(positions)
    assert "retry: 1000\n: too slow: buffer overflowed" in text
    resume = {"Last-Event-ID": str(ids[-1] if ids else head)}
    async with open_stream(gw.alice, session, headers=resume) as again:
        rest, _ = await again.events(until=positions[-1])
    assert ids + [e.id for e in rest] == positions


async def test_a_stream_ends_when_its_token_expires(gw: Harness) -> None:
    token = make_jwt("jane", exp_in=1)  # still accepted (leeway), but the stream is short
    client = gw.client(token)
    session = await gw.new_session(client)
    async with open_stream(client, session) as stream:
        async with asyncio.timeout(15):
            blocks = [block async for block in stream.blocks()]
    assert blocks[-1].retry == 1000
    assert any("stream lifetime reached" in c for c in blocks[-1].comments)


async def test_sse_for_unknown_or_bad_session_is_404_json(gw: Harness) -> None:
    for session in ("does-not-exist", "bad.id", "x" * 65):
        response = await gw.alice.get(events_url(session))
        assert response.status_code == 404, session
        assert response.json()["error"]["type"] in {"session_not_found", "not_found"}


async def test_bad_resume_position_is_422(gw: Harness) -> None:
    session = await gw.new_session()
    bad = await gw.alice.get(events_url(session), headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "Last-Event-ID"
    negative = await gw.alice.get(events_url(session), params={"after": -1})
    assert negative.status_code == 422 and negative.json()["error"]["field"] == "after"
    wrong_kind = await gw.alice.get(events_url(session), params={"kinds": "nope"})
    assert wrong_kind.status_code == 422 and wrong_kind.json()["error"]["field"] == "kinds"
