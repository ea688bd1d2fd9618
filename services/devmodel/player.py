"""What the wire encoders hand to the server (streamed frames, whole replies), and
sending a script's frames over ASGI at its pace, with its stall and drop faults.

Frames due at the same moment (or overdue, when the event loop is busy) go out in one
``http.response.body`` message, so a fast pace costs one write per wake-up rather than
one per token. Every wait also watches for the client going away (or the server
closing), so stalls and slow streams end as soon as nobody is listening.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .script import Script

Headers = list[tuple[bytes, bytes]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Frame(NamedTuple):
    """One piece of a streamed body. ``token`` frames are paced, counted and droppable."""

    data: bytes
    token: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete (non-streamed) HTTP response."""

    status: int
    body: bytes
    headers: Headers = field(default_factory=list)

    @classmethod
    def json(
        cls,
        status: int,
        body: bytes,
        headers: Headers | None = None,
        retry_after: float | None = None,
    ) -> Reply:
        all_headers = [*JSON_HEADERS, *(headers or [])]
        if retry_after is not None:
            # ``retry-after`` is whole seconds (HTTP); ``retry-after-ms`` keeps the exact
            # value and is what the OpenAI and Anthropic SDKs read first.
            all_headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
            all_headers.append((b"retry-after-ms", str(round(retry_after * 1000)).encode()))
        return cls(status, body, all_headers)


Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SLACK_S = 0.0005  # waits shorter than this are not worth a wake-up


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has disconnected (the request body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def idle(watch: asyncio.Future[None], delay: float) -> bool:
    """Wait ``delay`` seconds; False if the client left (or the server closed) meanwhile."""
    if watch.done():
        return False
    if delay <= 0:
        return True
    done, _ = await asyncio.wait((watch,), timeout=delay)
    return not done


async def start(send: Send, status: int, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def body(send: Send, data: bytes, more: bool = False) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})


async def stream(
    frames: Iterable[Frame], script: Script, send: Send, watch: asyncio.Future[None]
) -> bool:
    """Stream ``frames`` as SSE; False when the stream was dropped or abandoned.

    On False the caller must return without finishing the response: the server then
    closes the connection, which the client sees as a broken stream.
    """
    await start(send, 200, SSE_HEADERS)
    loop = asyncio.get_running_loop()
    origin = loop.time() + script.ttft_s
    total = script.output_tokens
    drop_at = math.inf if script.drop_after is None else min(script.drop_after, total)
    stall_at = min(script.stall_after, total) if script.stall_s > 0 else math.inf
    pending: list[bytes] = []
    sent = 0
    for frame in frames:
        if sent >= drop_at:
            await body(send, b"".join(pending), more=True)
            return False
        if sent >= stall_at and (frame.token or sent >= total):
            stall_at = math.inf
            await body(send, b"".join(pending), more=True)
            pending.clear()
            if not await idle(watch, script.stall_s):
                return False
            origin += script.stall_s
        if frame.token:
            delay = origin + sent * script.interval_s - loop.time()
            if delay > _SLACK_S:
                if pending:
                    await body(send, b"".join(pending), more=True)
                    pending.clear()
                if not await idle(watch, delay):
                    return False
            sent += 1
        pending.append(frame.data)
    if watch.done():
        return False
    await body(send, b"".join(pending))
    return True


async def complete(data: bytes, script: Script, send: Send, watch: asyncio.Future[None]) -> bool:
    """Answer in one body after the time streaming would have taken; honours stall/drop."""
    tokens = script.output_tokens
    delay = script.ttft_s + max(tokens - 1, 0) * script.interval_s + script.stall_s
    if not await idle(watch, delay):
        return False
    await start(send, 200, [*JSON_HEADERS, (b"content-length", str(len(data)).encode())])
    if script.drop_after is not None:
        cut = len(data) * min(script.drop_after, tokens) // max(tokens, 1)
        await body(send, data[: min(cut, len(data) - 1)], more=True)
        return False
    await body(send, data)
    return True
