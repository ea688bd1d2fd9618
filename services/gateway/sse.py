"""One client's Server-Sent Events stream: replay from the store, then live from the hub.

The client asks for events after position ``P`` (``Last-Event-ID``, else ``?after=``,
else 0). It joins the hub first and learns ``live_from`` (``L``): every event after
``L`` will arrive in its buffer. If ``P < L`` the events in ``(P, L]`` are read from
the store with a separate, bounded read that stops at ``L``. Then the buffer is
drained, dropping anything at or before the last position sent, so the stream has no
gap and no duplicate. Filtered-out kinds still advance that position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Literal

from litestar.response.base import ASGIResponse
from litestar.types import Receive, Scope, Send

from threadline.base.errors import ThreadlineError
from threadline.events.schema import KINDS
from threadline.events.store import EventStore
from threadline.services.gateway.hub import Frame, Subscriber, sse_event
from threadline.services.gateway.options import GatewayOptions

log = logging.getLogger(__name__)

#: an event kind, for ``?kinds=`` / ``?exclude=`` (each repeated: ``?exclude=a&exclude=b``):
#: a ``Literal`` of the catalogue's kinds, so the API validates and documents them
if TYPE_CHECKING:
    EventKind = str
else:
    EventKind = Literal[KINDS]
PING = b": ping\n\n"


class EventStream:
    """The byte chunks of one client's stream."""

    def __init__(
        self,
        store: EventStore,
        session: str,
        sub: Subscriber,
        *,
        after: int,
        live_from: int,
        kinds: list[EventKind] | None,
        exclude: list[EventKind] | None,
        options: GatewayOptions,
        lifetime_s: float,
        on_relay: Callable[[int], None],
    ) -> None:
        self.store = store
        self.session = session
        self.sub = sub
        self.sent = after
        self.live_from = live_from
        #: the kinds sent (empty: all) and those left out
        self.kinds, self.exclude = frozenset(kinds or ()), frozenset(exclude or ())
        self.options = options
        self.lifetime_s = lifetime_s
        self.on_relay = on_relay

    def _wanted(self, kind: str) -> bool:
        return (not self.kinds or kind in self.kinds) and kind not in self.exclude

    def _select(self, frames: list[Frame]) -> bytes:
        out = []
        for frame in frames:
            if frame.position <= self.sent:
                continue  # already replayed
            self.sent = frame.position
            if self._wanted(frame.kind):
                out.append(frame.data)
        self.on_relay(len(out))
        return b"".join(out)

    def _goodbye(self, why: str) -> bytes:
        retry_ms = self.options.retry_ms
        return b"retry: %d\n: %s; reconnect with Last-Event-ID\n\n" % (retry_ms, why.encode())

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        yield b"retry: %d\n\n" % self.options.retry_ms
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lifetime_s
        try:
            async with contextlib.aclosing(self._replay()) as replay:
                async for chunk in replay:
                    if chunk:
                        yield chunk
        except ThreadlineError as exc:
            log.warning("replay of session %s failed: %s", self.session, exc)
            yield self._goodbye("replay interrupted")
            return
        heartbeat_s = self.options.heartbeat_s
        following = live(self.sub, self._select, heartbeat_s=heartbeat_s, deadline=deadline)
        async with contextlib.aclosing(following) as chunks:
            async for chunk in chunks:
                if chunk:
                    yield chunk
        yield self._goodbye(
            "too slow: buffer overflowed"
            if self.sub.overflowed
            else "stream ended"
            if self.sub.ended
            else "stream lifetime reached"
        )

    async def _replay(self) -> AsyncGenerator[bytes, None]:
        """Stored events in ``(sent, live_from]``, in batches: the session's events as
        stored now (``live_from`` is the log's position the hub had seen, not
        necessarily one of this session's events; every event up to it is stored)."""
        if self.live_from <= self.sent:
            return
        out: list[bytes] = []
        read = self.store.read(self.session, after=self.sent)
        async with contextlib.aclosing(read) as stored:
            async for rec in stored:  # formatted as read: no frame to build, no second pass
                if rec.position > self.live_from:
                    break  # the live buffer has it
                self.sent = rec.position
                if self._wanted(kind := rec.kind):
                    out.append(sse_event(rec, kind))
                    if len(out) >= self.options.replay_batch:
                        self.on_relay(len(out))
                        yield b"".join(out)
                        out = []
        self.on_relay(len(out))
        yield b"".join(out)


async def live(
    sub: Subscriber, render: Callable[[list[Frame]], bytes], *, heartbeat_s: float, deadline: float
) -> AsyncGenerator[bytes, None]:
    """What ``render`` makes of the live frames as they come (maybe ``b""``), and ``: ping``
    after ``heartbeat_s`` without a write. Ends when the client must reconnect: it fell
    behind (``sub.overflowed``), the feed stopped (``sub.ended``) or the ``deadline``
    (loop time) passed."""
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    while True:
        frames = await sub.take()  # woken by events and by the hub's clock
        now = loop.time()
        if frames is not None:
            chunk = render(frames)
            yield chunk
            if chunk:
                last_write = now
            if sub.overflowed or sub.ended:
                return
        if now >= deadline:
            return
        if now - last_write >= heartbeat_s:
            yield PING
            last_write = now


class SSEResponse(ASGIResponse):
    """Streams ``chunks`` until they end or the client goes away; then ``on_close``.

    Unlike a plain streaming response it always runs ``on_close`` (leaving the hub,
    releasing the connection slot), whatever ends the response.
    """

    _should_set_content_length = False

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        on_close: Callable[[], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            status_code=200,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
        )
        self._chunks = chunks
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # two plain tasks, not an anyio task group: per stream, its task spawning and
        # cancel scopes cost more than a short turn's frames (py-spy, 50 conversations)
        tasks: tuple[asyncio.Task[None], ...] = ()
        try:
            await self.start_response(send=send)
            tasks = (
                asyncio.create_task(self._write(send)),
                asyncio.create_task(_until_disconnected(receive)),
            )
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failure of either is this response's
        finally:
            for task in tasks:
                task.cancel()
            if tasks:  # both ended before the chunks are closed (never while running)
                await asyncio.wait(tasks)
            with contextlib.suppress(Exception):
                await self._chunks.aclose()
            self._on_close()

    async def _write(self, send: Send) -> None:
        # a client gone while the stream read the store cancels the read (the store
        # raises a cancellation its nats-py request dropped: docs/eventstore.md)
        async for chunk in self._chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnected(receive: Receive) -> None:
    while True:
        message: Any = await receive()
        if message["type"] == "http.disconnect":
            return


class ConnectionLimiter:
    """Concurrent SSE connections per owner."""

    def __init__(self, per_owner: int) -> None:
        self.per_owner = per_owner
        self._open: Counter[str] = Counter()

    def acquire(self, owner: str) -> bool:
        if self._open[owner] >= self.per_owner:
            return False
        self._open[owner] += 1
        return True

    def release(self, owner: str) -> None:
        self._open[owner] -= 1
        if self._open[owner] <= 0:
            del self._open[owner]

    def count(self, owner: str) -> int:
        return self._open[owner]
