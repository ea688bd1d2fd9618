"""Gateway benchmark: SSE fan-out, replay against raw nats-py, idle connection cost.

The gateway runs as its own process (``python -m threadline.services.cli gateway``)
so its RSS can be read and the clients do not share its event loop. Clients are minimal
raw-socket SSE readers, so client-side parsing does not dominate what is measured.

* fan-out: one session streaming to N SSE clients (1,000; quick: 100); every client must
  receive every event; delivery lag = client receipt - moment ``append`` was called;
* replay: a 10,000-event session read over SSE from the start vs a raw nats-py ordered
  consumer reading the same subject, as a ratio of throughputs;
* idle cost: gateway RSS growth per idle SSE connection, all on one session and each on
  its own session (which adds one upstream follow per session).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import nats
from nats.js.api import DeliverPolicy

from bench.common import Timer, median, percentile, progress
from threadline.base.config import StreamSettings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted, TextDelta
from threadline.events.store import NewEvent
from threadline.events.stream import stream_config

TOKEN = "bench-token"
MAX_CONSUMERS = 100_000
_ID_RE = re.compile(rb"^id: (\d+)$", re.MULTILINE)


@dataclass
class Gateway:
    url: str
    pid: int
    stream: StreamSettings

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")


@contextlib.asynccontextmanager
async def gateway_process(nats_url: str) -> AsyncIterator[Gateway]:
    tag = uuid.uuid4().hex[:8]
    stream = StreamSettings(name=f"G{tag}", prefix=f"g{tag}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env |= {
        "THREADLINE_NATS_URL": nats_url,
        "THREADLINE_STREAM": stream.name,
        "THREADLINE_PREFIX": stream.prefix,
        "THREADLINE_TOKENS": f"{TOKEN}:bench",
        "THREADLINE_GATEWAY_MAX_SSE_PER_OWNER": "1000000",
        "THREADLINE_LOG_LEVEL": "WARNING",
    }
    # The stream as the store makes it, but with room for more than nats-server's default
    # of 1,000 consumers per stream (one upstream follow per watched session is one).
    nc = await nats.connect(nats_url)
    config = dataclasses.replace(stream_config(stream), max_consumers=MAX_CONSUMERS)
    await nc.jetstream().add_stream(config)
    await nc.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", "gateway", "--port", "0",
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    url = ""
    while not url:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise RuntimeError("the gateway did not start")
        if found := re.search(r"gateway on (http://\S+)", line):
            url = found[1]
    try:
        yield Gateway(url, proc.pid, stream)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


# --------------------------------------------------------------------------- SSE clients


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: list[tuple[int, float]] = field(default_factory=list)

    async def read_until(self, last: int) -> None:
        """Record (id, receipt time) of every event until ``last`` arrives."""
        pending = b""
        while not self.received or self.received[-1][0] < last:
            data = await self.reader.read(65536)
            if not data:
                raise RuntimeError("stream ended early")
            now = time.perf_counter()
            data, _, pending = (pending + data).rpartition(b"\n")
            self.received += [(int(m[1]), now) for m in _ID_RE.finditer(data)]

    def close(self) -> None:
        self.writer.close()


async def connect(gw: Gateway, session: str, after: int) -> Client:
    reader, writer = await asyncio.open_connection(*gw.address, limit=1 << 20)
    host = gw.address[0]
    writer.write(
        f"GET /v1/sessions/{session}/events?after={after} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = await reader.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"stream refused: {status!r}")
    while await reader.readline() != b"\r\n":
        pass
    return Client(reader, writer)


async def connect_many(gw: Gateway, sessions: list[str], after: int) -> list[Client]:
    clients: list[Client] = []
    for start in range(0, len(sessions), 100):
        batch = sessions[start : start + 100]
        clients += await asyncio.gather(*(connect(gw, s, after) for s in batch))
    return clients


async def new_session(store: JetStreamEventStore) -> tuple[str, int]:
    session = uuid.uuid4().hex
    (rec,) = await store.append(session, NewEvent(event=SessionStarted(owner="bench")))
    return session, rec.position


# --------------------------------------------------------------------------- measures


async def fan_out(
    nats_url: str, gw: Gateway, clients_n: int, events_n: int, interval_s: float
) -> tuple[list[float], bool]:
    store = await JetStreamEventStore.connect(nats_url, gw.stream)
    session, head = await new_session(store)
    clients = await connect_many(gw, [session] * clients_n, head)
    sent: dict[int, float] = {}
    last = head + events_n  # nothing else writes to this stream meanwhile
    readers = asyncio.gather(*(c.read_until(last) for c in clients))
    for i in range(events_n):
        start = time.perf_counter()
        (rec,) = await store.append(session, NewEvent(event=TextDelta(text=f"token {i} ")))
        sent[rec.position] = start
        await asyncio.sleep(interval_s)  # pacing: a model streaming, not synchronisation
    assert max(sent) == last
    await asyncio.wait_for(readers, 120)
    complete = all([p for p, _ in c.received] == sorted(sent) for c in clients)
    lags = [(t - sent[p]) * 1000 for c in clients for p, t in c.received if p in sent]
    for c in clients:
        c.close()
    await store.close()
    return lags, complete


async def replay(nats_url: str, gw: Gateway, events_n: int) -> tuple[float, float]:
    """Events/s reading one session from the start: over SSE, and raw nats-py."""
    store = await JetStreamEventStore.connect(nats_url, gw.stream)
    session, _ = await new_session(store)
    for start in range(0, events_n, 1000):
        batch = [NewEvent(event=TextDelta(text=f"chunk {start + i} ")) for i in range(1000)]
        await store.append(session, batch[: events_n - start])
    last = (await store.head(session)).position
    total = (await store.head(session)).version
    await store.close()

    with Timer() as sse_time:
        client = await connect(gw, session, 0)
        await client.read_until(last)
    client.close()
    assert len(client.received) == total

    nc = await nats.connect(nats_url)
    got = 0
    done = asyncio.Event()

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        nonlocal got
        got += 1
        if got == total:
            done.set()

    with Timer() as raw_time:
        sub = await nc.jetstream().subscribe(
            f"{gw.stream.prefix}.{session}.*",
            cb=on_msg,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        await asyncio.wait_for(done.wait(), 60)
    await sub.unsubscribe()
    await nc.close()
    return total / sse_time.seconds, total / raw_time.seconds


async def _settled(gw: Gateway, clients: int) -> None:
    """Wait until the gateway counts ``clients`` SSE connections (its /metrics)."""
    host, port = gw.address
    while True:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        body = (await reader.read()).decode()
        writer.close()
        found = re.search(r"^threadline_gateway_sse_clients (\d+)", body, re.MULTILINE)
        if found and int(found[1]) == clients:
            return
        await asyncio.sleep(0.05)  # polling a benchmark subject, not a test


async def idle_cost(nats_url: str, clients_n: int, *, distinct: bool) -> float:
    """KiB of gateway RSS per idle SSE connection (one session, or one session each)."""
    async with gateway_process(nats_url) as gw:
        store = await JetStreamEventStore.connect(nats_url, gw.stream)
        sessions = [await new_session(store) for _ in range(clients_n if distinct else 1)]
        await store.close()
        warm = await connect_many(gw, [sessions[0][0]] * 20, sessions[0][1])  # load code paths
        for c in warm:
            c.close()
        await _settled(gw, 0)
        before = gw.rss_kib()
        ids = [s for s, _ in sessions] if distinct else [sessions[0][0]] * clients_n
        clients = await connect_many(gw, ids, 0)
        await _settled(gw, clients_n)
        grown = gw.rss_kib() - before
        for c in clients:
            c.close()
    return grown / clients_n


async def run(url: str, *, quick: bool = False) -> list[str]:
    clients_n, events_n, interval_s = (100, 50, 0.02) if quick else (1_000, 200, 0.05)
    replay_n = 2_000 if quick else 10_000
    idle_n = 200 if quick else 1_000
    async with gateway_process(url) as gw:
        progress(f"SSE fan-out: {events_n} events to {clients_n} clients of one session")
        lags, complete = await fan_out(url, gw, clients_n, events_n, interval_s)
        progress(f"replay of a {replay_n:,}-event session: SSE vs raw ordered consumer")
        sse_rate, raw_rate = await replay(url, gw, replay_n)
    progress(f"idle cost: {idle_n} idle SSE connections (one session, then one each)")
    idle_one = await idle_cost(url, idle_n, distinct=False)
    idle_each = await idle_cost(url, idle_n, distinct=True)
    rate = 1 / interval_s
    return [
        "| measure | value | notes |",
        "| --- | --- | --- |",
        f"| fan-out: clients x events | {clients_n:,} x {events_n} | one session, "
        f"{rate:.0f} events/s; every client got every event in order: "
        f"{'yes' if complete else 'NO'} |",
        f"| fan-out delivery lag p50 (ms) | {median(lags):.2f} | append call -> SSE client |",
        f"| fan-out delivery lag p99 (ms) | {percentile(lags, 99):.2f} | |",
        f"| replay over SSE (events/s) | {sse_rate:,.0f} | {replay_n:,} events, from the start |",
        f"| replay, raw nats-py ordered consumer (events/s) | {raw_rate:,.0f} | same subject |",
        f"| replay SSE / raw | {sse_rate / raw_rate:.2f} | |",
        f"| gateway RSS per idle SSE connection (KiB) | {idle_one:.1f} | {idle_n:,} on one "
        "session |",
        f"| gateway RSS per idle SSE connection, own session (KiB) | {idle_each:.1f} | "
        f"{idle_n:,} sessions, one upstream follow each |",
    ]


if __name__ == "__main__":  # python -m bench.gateway [--quick]: this benchmark alone
    from bench.common import nats_server

    async def _main() -> None:
        async with nats_server() as server:
            print("\n".join(await run(server.url, quick="--quick" in sys.argv)))

    asyncio.run(_main())
