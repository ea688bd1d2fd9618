"""A raw streaming client: one POST whose answer is Server-Sent Events, read from a raw
socket by an ``asyncio.Protocol`` that stamps bytes on arrival and only looks for the
first content delta and the end of the stream (as ``bench/e2e_client.py`` reads the
gateway's stream), so client-side parsing does not weigh on what is measured.

It speaks to anything that streams an answer to one POST: the dev model's (or the
LiteLLM proxy's) OpenAI chat completions, and the AI SDK's UI message stream. Each turn
opens its own connection (``Connection: close``); time to first token runs from writing
the request to the first content delta, the duration to ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.e2e_client import MESSAGE, TurnError

_DONE = b"data: [DONE]"
_BLANK = b"\r\n\r\n"
_TAIL = 64  # bytes kept across reads, so a marker split between two reads is still seen


@dataclass(frozen=True)
class Wire:
    """How one kind of server is asked: the path, the request body of a worker's k-th
    turn, and the pattern of a content delta in the answer."""

    path: str
    body: Callable[[int, int], bytes]
    first: re.Pattern[bytes]
    token: str = "bench"


def openai_body(messages: list[dict[str, str]]) -> bytes:
    return json.dumps(
        {
            "model": "threadline-dev",
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()


def openai_wire(text: str = MESSAGE, token: str = "bench") -> Wire:
    """OpenAI chat completions (the dev model, the LiteLLM proxy): one user message."""
    body = openai_body([{"role": "user", "content": text}])
    first = re.compile(rb'"content":"[^"]')
    return Wire("/v1/chat/completions", lambda _w, _k: body, first, token)


def aisdk_wire(text: str = MESSAGE) -> Wire:
    """The AI SDK peer's chat route: a new chat per turn, sent its one user message as
    ``useChat`` sends the last message to a route that keeps the history."""
    run = next(_RUNS)

    def body(worker: int, k: int) -> bytes:
        chat = f"bench-{run}-{worker}-{k}"
        message = {"id": f"{chat}-m", "role": "user", "parts": [{"type": "text", "text": text}]}
        return json.dumps({"id": chat, "message": message}).encode()

    return Wire("/api/chat", body, re.compile(rb'"type":"text-delta"'))


_RUNS = itertools.count()


class _Answer(asyncio.Protocol):
    def __init__(self, first: re.Pattern[bytes]) -> None:
        self.first = first
        self.head = b""
        self.status = 0
        self.tail = b""
        self.first_at: float | None = None
        self.ended: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.status != 200:
            self.head += data  # up to a 200's head; else the error's body (told on close)
            if self.status or _BLANK not in self.head:
                return
            head, _, data = self.head.partition(_BLANK)
            self.status = int(head.split(None, 2)[1])
            if self.status != 200:
                return
        window = self.tail + data
        if self.first_at is None and self.first.search(window):
            self.first_at = now
        if _DONE in window and not self.ended.done():
            self.ended.set_result(now)
        self.tail = window[-_TAIL:]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ended.done():
            return
        if self.status and self.status != 200:
            body = self.head.partition(_BLANK)[2][:200]
            error = TurnError(f"HTTP {self.status}: {body!r}")
        else:
            error = TurnError("stream closed before data: [DONE]")
        self.ended.set_exception(error)


class StreamClient:
    """Turns against ``base_url`` over ``wire``: ``turn(worker, k)`` is a ``TurnFn``."""

    def __init__(self, base_url: str, wire: Wire) -> None:
        host, port = base_url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
        self.address = (host, int(port))
        self.wire = wire
        self.head = (
            f"POST {wire.path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {wire.token}\r\n"
            "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            "Connection: close\r\n"
        ).encode()

    async def turn(self, worker: int, k: int) -> tuple[float, float]:
        return await self.send(self.wire.body(worker, k))

    async def send(self, body: bytes) -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        first = self.wire.first
        transport, answer = await loop.create_connection(lambda: _Answer(first), *self.address)
        try:
            start = time.perf_counter()
            transport.write(self.head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            end = await answer.ended
        finally:
            transport.close()
        if answer.first_at is None:
            raise TurnError("no content delta before the end of the stream")
        return (answer.first_at - start) * 1000, end - start
