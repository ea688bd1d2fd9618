"""SSE clients that hang up as soon as their stream opens, against a gateway process
started as in production (``threadline gateway``): each stream ends and gives back its
slot. In that shape a stream's replay reads the store, and nats-py's request may drop
the cancellation that the hang-up sends a send to a closed connection
does not fail, so such a stream used to write heartbeats to nobody for good (the gateway
benchmark's idle-cost step waited for ever: 16 to 19 of 20 such streams stayed)."""

from __future__ import annotations

import asyncio

from bench import gateway as bench_gateway
from threadline.events.jetstream import JetStreamEventStore
from threadline.services.runtime.natsserver import EmbeddedNats


async def test_streams_of_clients_that_hang_up_at_once_end(nats_server: EmbeddedNats) -> None:
    async with bench_gateway.gateway_process(nats_server.url) as gw:
        store = await JetStreamEventStore.connect(nats_server.url, gw.stream)
        try:
            session, position = await bench_gateway.new_session(store)
            await bench_gateway.new_session(store)  # the log goes on past the session
        finally:
            await store.close()
        clients = await bench_gateway.connect_many(gw, [session] * 20, position)
        for client in clients:
            client.close()
        # another process: its /metrics is the only view of its streams
        await asyncio.wait_for(bench_gateway._settled(gw, 0), 90)  # a heartbeat (15 s) at most
