"""Clients of the end-to-end benchmark: conversations through the gateway, and the baseline.

* A conversation: a session created over REST, its SSE stream opened (one raw socket,
  parsed by an ``asyncio.Protocol`` that timestamps bytes as they arrive and only looks
  for what it needs), a message posted, then the first ``text_delta`` on the stream (time
  to first token) and the turn's terminal event (duration), both timed from the moment
  the POST was written; then both connections are closed. Opening is timed apart.
* The baseline is a direct ``openai`` SDK stream from the same dev model, read to the end
  (as the agent reads it), at the same concurrency.
* :func:`drive` runs N of either in a closed loop: each worker starts its next
  conversation (or stream) when the previous one ended, until the phase's duration is
  over (at least one each).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from openai import AsyncOpenAI

from bench.common import progress

WORDS = 50
MESSAGE = f"Tell me something. [[words:{WORDS}]]"
TURN_TIMEOUT_S = 120.0
OPEN_TIMEOUT_S = 60.0
#: first turns are spread over this long (one answer's length), not fired at one instant
RAMP_S = 1.0
#: one turn of a worker: (worker index, turn number) -> (TTFT ms, duration s)
TurnFn = Callable[[int, int], Awaitable[tuple[float, float]]]
_TERMINAL = frozenset({b"turn_completed", b"turn_failed", b"turn_cancelled"})
_TURN_RE = re.compile(rb'"turn":"([^"]*)"')


class TurnError(Exception):
    """A turn that did not complete as it should (counted as an error)."""


@dataclass
class Tally:
    """Live counters of a phase (for the progress line) and its measurements."""

    unit: str = "turns done"
    started: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    duration_s: list[float] = field(default_factory=list)
    #: session created and stream open (end to end only), not part of the turn
    open_ms: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def done(self) -> int:
        return len(self.duration_s)

    def fail(self, exc: BaseException) -> None:
        self.errors[f"{type(exc).__name__}: {exc}"[:120]] += 1

    def line(self) -> str:
        in_flight = self.started - self.done - self.errors.total()
        return f"{self.done} {self.unit}, {in_flight} in flight, {self.errors.total()} errors"


@contextlib.asynccontextmanager
async def ticking(label: str, status: Callable[[], str]) -> AsyncIterator[None]:
    """A progress line every second while the block runs."""
    start = time.perf_counter()

    async def tick() -> None:
        while True:
            await asyncio.sleep(1.0)
            progress(f"{label}: {status()} ({time.perf_counter() - start:.0f} s)")

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def drive(
    n: int, duration_s: float, turn: TurnFn, tally: Tally | None = None
) -> tuple[Tally, float]:
    """``n`` closed-loop workers calling ``turn(worker, k)`` until ``duration_s`` has
    passed; a worker stops at its first error. Returns the tally and the wall time until
    the last turn ended."""
    tally = Tally() if tally is None else tally
    start = time.perf_counter()
    deadline = start + duration_s

    async def worker(i: int) -> None:
        await asyncio.sleep(RAMP_S * i / n)
        k = 0
        while True:
            tally.started += 1
            try:
                async with asyncio.timeout(TURN_TIMEOUT_S):
                    ttft, duration = await turn(i, k)
            except Exception as exc:  # any failure is an error of the system under test
                tally.fail(exc)
                return
            tally.ttft_ms.append(ttft)
            tally.duration_s.append(duration)
            k += 1
            if time.perf_counter() >= deadline:
                return

    async with asyncio.timeout(duration_s + TURN_TIMEOUT_S + 60):
        await asyncio.gather(*(worker(i) for i in range(n)))
    return tally, time.perf_counter() - start


# --------------------------------------------------------------------------- baseline


class DirectClient:
    """The baseline: ``openai`` SDK streams straight from the dev model."""

    def __init__(self, dev_url: str) -> None:
        self.client = AsyncOpenAI(
            base_url=f"{dev_url}/v1", api_key="bench", max_retries=0, timeout=TURN_TIMEOUT_S
        )

    async def turn(self, _worker: int, _k: int) -> tuple[float, float]:
        start = time.perf_counter()
        stream = await self.client.chat.completions.create(
            model="threadline-dev", messages=[{"role": "user", "content": MESSAGE}],
            stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        first = None
        async for chunk in stream:  # read to the end, as the agent does
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
        end = time.perf_counter()
        if first is None:
            raise TurnError("no content in the stream")
        return (first - start) * 1000, end - start

    async def close(self) -> None:
        await self.client.close()


# --------------------------------------------------------------------------- gateway


class Http:
    """One keep-alive HTTP/1.1 connection for a conversation's requests."""

    def __init__(self, address: tuple[str, int], token: str) -> None:
        self.address = address
        self.head = f"Host: {address[0]}\r\nAuthorization: Bearer {token}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(*self.address)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.reader is None or self.reader.at_eof() or self.writer is None:
            # the gateway closes a connection idle for longer than its keep-alive timeout
            # (30 s); like any HTTP client, open a new one rather than write into the old
            self.close()
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\n%sContent-Type: application/json\r\nContent-Length: %d"
            b"\r\n\r\n%s" % (path.encode(), self.head, len(body), body)
        )
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise TurnError(f"POST {path}: connection closed")
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class SSEStream(asyncio.Protocol):
    """A session's event stream, read raw. Bytes are timestamped on arrival; only the
    first ``text_delta`` after :meth:`arm` and terminal events (with their turn id) are
    picked out."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.head = b""
        self.pending = b""
        self.armed = False
        self.first_delta: float | None = None
        self.terminal_due: bytes | None = None  # a terminal event whose data line is next
        self.ended: asyncio.Future[tuple[bytes, bytes, float]] = loop.create_future()

    def arm(self) -> None:
        """Expect a new turn: forget the last one's first delta and terminal event."""
        self.armed = True
        self.first_delta = None
        self.ended = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.opened.done():
            data = self._headers(data)
        text, _, self.pending = (self.pending + data).rpartition(b"\n")
        if text:
            self._lines(text, now)

    def _headers(self, data: bytes) -> bytes:
        self.head += data
        head, sep, rest = self.head.partition(b"\r\n\r\n")
        if not sep:
            return b""
        if head.startswith(b"HTTP/1.1 200"):
            self.opened.set_result(None)
        else:
            self.opened.set_exception(TurnError(f"stream refused: {head.splitlines()[0]!r}"))
        return rest

    def _lines(self, text: bytes, now: float) -> None:
        if self.armed and self.first_delta is None and b"event: text_delta" in text:
            self.first_delta = now
        if self.terminal_due is None and b"event: turn_" not in text and b"\n: " not in text:
            return
        for line in text.split(b"\n"):
            if line.startswith(b"event: turn_") and line[7:] in _TERMINAL:
                self.terminal_due = line[7:]
            elif self.terminal_due is not None and line.startswith(b"data: "):
                found = _TURN_RE.search(line)
                self._terminal(self.terminal_due, found[1] if found else b"", now)
                self.terminal_due = None
            elif line.startswith(b": ") and b"reconnect" in line:
                self._fail(TurnError(f"stream ended by the gateway: {line[2:]!r}"))

    def _terminal(self, kind: bytes, turn: bytes, now: float) -> None:
        if not self.ended.done():
            self.ended.set_result((kind, turn, now))

    def _fail(self, exc: Exception) -> None:
        for future in (self.opened, self.ended):
            if not future.done():
                future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(TurnError("stream connection closed"))

    def discard(self) -> None:
        """We are closing the stream: nobody waits for anything from it any more."""
        for future in (self.opened, self.ended):
            future.cancel()


class Conversation:
    """A session, its SSE stream and its POST connection."""

    def __init__(self, gateway_url: str, token: str) -> None:
        host, port = gateway_url.removeprefix("http://").rsplit(":", 1)
        self.address = (host, int(port))
        self.token = token
        self.http = Http(self.address, token)
        self.session = ""
        self.sse: SSEStream | None = None
        self.transport: asyncio.BaseTransport | None = None

    async def open(self) -> None:
        await self.http.connect()
        status, body = await self.http.post("/v1/sessions", b'{"provider": "dev"}')
        if status != 201:
            raise TurnError(f"create session: HTTP {status} {body[:200]!r}")
        created = json.loads(body)
        self.session = created["id"]
        loop = asyncio.get_running_loop()
        self.transport, self.sse = await loop.create_connection(SSEStream, *self.address)
        assert isinstance(self.transport, asyncio.WriteTransport)
        self.transport.write(
            f"GET /v1/sessions/{self.session}/events?after={created['position']} HTTP/1.1\r\n"
            f"Host: {self.address[0]}\r\nAuthorization: Bearer {self.token}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await self.sse.opened  # the gateway has joined the session's live feed

    async def turn(self, text: str = MESSAGE) -> tuple[float, float]:
        assert self.sse is not None
        self.sse.arm()
        start = time.perf_counter()
        path = f"/v1/sessions/{self.session}/messages"
        status, body = await self.http.post(path, json.dumps({"text": text}).encode())
        if status != 202:
            raise TurnError(f"POST message: HTTP {status} {body[:200]!r}")
        turn_id = json.loads(body)["turn_id"].encode()
        kind, turn, end = await self.sse.ended
        if turn != turn_id:
            raise TurnError(f"terminal event of turn {turn!r}, expected {turn_id!r}")
        if kind != b"turn_completed":
            raise TurnError(kind.decode())
        if self.sse.first_delta is None:
            raise TurnError("no text delta before the end of the turn")
        return (self.sse.first_delta - start) * 1000, end - start

    def close(self) -> None:
        self.http.close()
        if self.sse is not None:
            self.sse.discard()
        if self.transport is not None:
            self.transport.close()


class GatewayClient:
    """Conversations through the gateway, one at a time per worker."""

    def __init__(self, gateway_url: str, token_for: Callable[[int], str], tally: Tally) -> None:
        self.gateway_url = gateway_url
        self.token_for = token_for
        self.tally = tally

    async def turn(self, worker: int, _k: int) -> tuple[float, float]:
        conv = Conversation(self.gateway_url, self.token_for(worker))
        try:
            start = time.perf_counter()
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                await conv.open()
            self.tally.open_ms.append((time.perf_counter() - start) * 1000)
            return await conv.turn()
        finally:
            conv.close()
