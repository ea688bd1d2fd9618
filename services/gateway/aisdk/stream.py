"""One turn as a UI message stream: its stored events, then live ones from the hub.

The handler joins the session's hub feed first (``live_from`` = ``L``), then reads the
stored events (up to at least ``L``), so the live buffer continues exactly where the
stored ones end: frames at or before the last stored position are dropped. Stored
events start at the turn's counting attempt. The stream ends after the turn's terminal
event with ``[DONE]``, or, while the turn waits for tool approvals, after their
``tool-approval-request`` chunks (``finish`` ``tool-calls``, ``[DONE]``). If the gateway
has to end it earlier (the client is too slow, the stream's lifetime or the token's
expiry is reached, shutdown), it sends an
``error`` chunk saying so and ends without ``[DONE]``: ``GET /api/chat/{id}/stream``
replays the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence

from threadline.events.schema import Envelope
from threadline.events.store import Recorded
from threadline.services.gateway.aisdk import protocol as p
from threadline.services.gateway.aisdk.chunks import TurnChunks, replay_start
from threadline.services.gateway.context import Slot
from threadline.services.gateway.hub import Frame
from threadline.services.gateway.sse import SSEResponse, live


class TurnStream:
    """The bytes of one client's UI message stream for ``turn``, in ``slot`` (joined)."""

    def __init__(
        self,
        turn: str,
        slot: Slot,
        stored: Sequence[Recorded],
        *,
        after: int,
        notes: Sequence[p.Chunk],
    ) -> None:
        assert slot.sub is not None, "join() first"
        self.mapper = TurnChunks(turn)
        self.slot, self.sub = slot, slot.sub
        self.stored = stored
        #: events at or before this position are mapped but not sent (``Last-Event-ID``)
        self.after = after
        #: chunks of the request itself, sent after ``start``
        self.notes = notes
        self.seen = stored[-1].position if stored else 0
        self.on_relay = slot.gw.metrics.events_relayed.inc

    def _relay(self, position: int, env: Envelope) -> bytes:
        chunks = self.mapper.feed(env)
        if not chunks or position <= self.after:
            return b""
        self.on_relay(1)
        return p.frame(chunks, position)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        out = [p.frame([*self.mapper.start(), *self.notes])]
        start = replay_start(self.stored, self.mapper.turn)
        for rec in self.stored[start:]:
            out.append(self._relay(rec.position, rec.envelope))
            if self.mapper.done:
                yield b"".join(out) + p.DONE
                return
        if self.mapper.paused():
            yield b"".join(out) + self._pause()
            return
        yield b"".join(out)
        deadline = asyncio.get_running_loop().time() + self.slot.lifetime_s
        heartbeat_s = self.slot.gw.options.heartbeat_s
        following = live(self.sub, self._live, heartbeat_s=heartbeat_s, deadline=deadline)
        async with contextlib.aclosing(following) as chunks:
            async for chunk in chunks:
                if self.mapper.done:
                    yield chunk + p.DONE
                    return
                if self.mapper.paused():
                    yield chunk + self._pause()
                    return
                if chunk:
                    yield chunk
        yield _interrupted(
            "the client fell behind"
            if self.sub.overflowed
            else "the gateway ended it"
            if self.sub.ended
            else "it reached its maximum duration"
        )

    def _pause(self) -> bytes:
        self.on_relay(1)
        return p.frame(self.mapper.pause()) + p.DONE

    def _live(self, frames: list[Frame]) -> bytes:
        out: list[bytes] = []
        for frame in frames:
            if frame.position <= self.seen:
                continue  # already read from the store
            self.seen = frame.position
            out.append(self._relay(frame.position, frame.envelope))
            if self.mapper.done:
                break
        return b"".join(out)


def _interrupted(why: str) -> bytes:
    text = f"the stream was interrupted ({why}); resume it with GET /api/chat/{{id}}/stream"
    return p.frame([p.Error(error_text=text)])


def respond(
    slot: Slot,
    turn: str,
    stored: Sequence[Recorded],
    *,
    after: int = 0,
    notes: Sequence[p.Chunk] = (),
) -> SSEResponse:
    """The turn's UI message stream in ``slot`` (joined), which it gives back when it ends."""
    stream = TurnStream(turn, slot, stored, after=after, notes=notes)
    return slot.respond(stream.chunks(), {**p.STREAM_HEADERS, "x-threadline-session": slot.session})
