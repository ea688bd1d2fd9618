"""One turn as a UI message stream: its stored events, then live ones from the hub.

The handler joins the session's hub feed first (``live_from`` = ``L``), then reads the
stored events (up to at least ``L``), so the live buffer continues exactly where the
stored ones end: frames at or before the last stored position are dropped. Stored
events start at the turn's counting attempt. The stream ends after the turn's terminal
event with ``[DONE]``; if the gateway has to end it earlier (the client is too slow,
the stream's lifetime or the token's expiry is reached, shutdown), it sends an
``error`` chunk saying so and ends without ``[DONE]``: ``GET /api/chat/{id}/stream``
replays the turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Sequence

from threadline.events import codec
from threadline.events.store import Recorded
from threadline.services.gateway.aisdk import protocol as p
from threadline.services.gateway.aisdk.chunks import TurnChunks, replay_start
from threadline.services.gateway.auth import Principal
from threadline.services.gateway.context import Gateway
from threadline.services.gateway.errors import Problem
from threadline.services.gateway.hub import Frame, Subscriber
from threadline.services.gateway.sse import SSEResponse


def record_of(frame: Frame) -> bytes:
    """The stored record inside a hub frame (``id: …\\nevent: …\\ndata: <record>\\n\\n``)."""
    return frame.data.split(b"\ndata: ", 1)[1].removesuffix(b"\n\n")


class TurnStream:
    """The bytes of one client's UI message stream for ``turn``."""

    def __init__(
        self,
        turn: str,
        sub: Subscriber,
        stored: Sequence[Recorded],
        *,
        after: int = 0,
        heartbeat_s: float,
        lifetime_s: float,
        on_relay: Callable[[int], None],
    ) -> None:
        self.mapper = TurnChunks(turn)
        self.sub = sub
        self.stored = stored
        #: events at or before this position are mapped but not sent (``Last-Event-ID``)
        self.after = after
        self.seen = stored[-1].position if stored else 0
        self.heartbeat_s = heartbeat_s
        self.lifetime_s = lifetime_s
        self.on_relay = on_relay

    def _relay(self, position: int, record: Recorded | bytes) -> bytes:
        env = record.envelope if isinstance(record, Recorded) else codec.decode(record, position)
        chunks = self.mapper.feed(env)
        if not chunks or position <= self.after:
            return b""
        self.on_relay(1)
        return p.frame(chunks, position)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        out = [p.frame(self.mapper.start())]
        start = replay_start(self.stored, self.mapper.turn)
        for rec in self.stored[start:]:
            out.append(self._relay(rec.position, rec))
            if self.mapper.done:
                yield b"".join(out) + p.DONE
                return
        yield b"".join(out)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lifetime_s
        last_write = loop.time()
        while True:
            frames = await self.sub.take()  # woken by events and by the hub's clock
            now = loop.time()
            if frames is not None:
                chunk = b"".join(self._live(frames))
                if self.mapper.done:
                    yield chunk + p.DONE
                    return
                if chunk:
                    yield chunk
                    last_write = now
                if self.sub.overflowed or self.sub.ended:
                    why = (
                        "the client fell behind" if self.sub.overflowed else "the gateway ended it"
                    )
                    yield _interrupted(why)
                    return
            if now >= deadline:
                yield _interrupted("it reached its maximum duration")
                return
            if now - last_write >= self.heartbeat_s:
                yield p.PING
                last_write = now

    def _live(self, frames: list[Frame]) -> list[bytes]:
        out: list[bytes] = []
        for frame in frames:
            if frame.position <= self.seen:
                continue  # already read from the store
            self.seen = frame.position
            out.append(self._relay(frame.position, record_of(frame)))
            if self.mapper.done:
                break
        return out


def _interrupted(why: str) -> bytes:
    text = f"the stream was interrupted ({why}); resume it with GET /api/chat/{{id}}/stream"
    return p.frame([p.Error(error_text=text)])


class Slot:
    """A stream's place: the owner's connection slot and the session's hub subscription."""

    def __init__(self, gw: Gateway, principal: Principal, session: str) -> None:
        self.gw = gw
        self.principal = principal
        self.session = session
        self.sub: Subscriber | None = None
        self.acquired = False

    def acquire(self) -> None:
        gw = self.gw
        if not gw.limiter.acquire(self.principal.owner):
            raise Problem(
                429,
                "too_many_streams",
                f"at most {gw.limiter.per_owner} concurrent streams per owner",
                headers={"Retry-After": "5"},
            )
        self.acquired = True

    async def join(self) -> Subscriber:
        self.sub, _ = await self.gw.hub.join(self.session)
        return self.sub

    def release(self) -> None:
        """Give everything back (idempotent)."""
        if self.sub is not None:
            self.gw.hub.leave(self.session, self.sub)
            self.sub = None
        if self.acquired:
            self.gw.limiter.release(self.principal.owner)
            self.acquired = False

    def respond(self, turn: str, stored: Sequence[Recorded], *, after: int = 0) -> SSEResponse:
        """The streaming response; the slot is released when it ends, however it ends."""
        gw, sub = self.gw, self.sub
        assert sub is not None, "join() first"
        lifetime = gw.options.max_stream_s
        if self.principal.expires_at is not None:
            lifetime = min(lifetime, self.principal.expires_at - time.time())
        stream = TurnStream(
            turn,
            sub,
            stored,
            after=after,
            heartbeat_s=gw.options.heartbeat_s,
            lifetime_s=lifetime,
            on_relay=gw.metrics.relayed,
        )
        gw.metrics.sse_clients += 1

        def closed() -> None:
            gw.metrics.sse_clients -= 1
            self.release()

        headers = {**p.STREAM_HEADERS, "x-threadline-session": self.session}
        return SSEResponse(stream.chunks(), closed, headers=headers)
