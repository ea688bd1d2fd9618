"""Fan-out: one upstream follow of the whole log per process, shared by every SSE client.

The first client starts the *upstream*: it reads the log's newest position ``G`` and
follows ``store.follow_all(after=G)`` (which yields only stored events). Each event of a
session with clients is framed once and offered to every subscriber's bounded buffer;
offering never waits; events of sessions without clients here are skipped. A
subscriber whose buffer is full is cut off (it gets a ``retry:`` hint and reconnects
with ``Last-Event-ID``), so a slow client never delays the others.

One follow for all sessions, not one per session: opening and closing a stream costs
no consumer on the server (creating and deleting one, its heartbeats and flow control
cost more than the events of a short turn), and a thousand idle streams cost nothing
upstream. Every gateway process reads the whole log's live tail once; the upstream
stops after ``idle_s`` without any client.

A subscriber joins with ``live_from``: the newest position the upstream has seen (or
``G``). Every event after it arrives in the buffer; anything the client is missing up
to it is already stored and is read from the store separately
(:mod:`~threadline.services.gateway.sse`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine
from typing import Any, Final, NamedTuple

from threadline.base.errors import StoreUnavailable
from threadline.events import codec
from threadline.events.schema import Envelope
from threadline.events.store import EventStore, Recorded

log = logging.getLogger(__name__)


class Frame(NamedTuple):
    """One event as an SSE frame: ``id:`` position, ``event:`` kind, ``data:`` envelope
    (and the envelope itself, for streams that map events to other frames)."""

    position: int
    kind: str
    data: bytes
    envelope: Envelope


def sse_event(rec: Recorded, kind: str) -> bytes:
    """The record as one Server-Sent Event: ``id:`` its position, ``event:`` its kind,
    ``data:`` its envelope as stored."""
    raw = rec.raw
    if b"\n" in raw or b"\r" in raw:  # never from our encoder; keep the framing safe anyway
        raw = codec.encode(rec.envelope)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (rec.position, kind.encode(), raw)


def frame_of(rec: Recorded) -> Frame:
    kind = rec.kind
    return Frame(rec.position, kind, sse_event(rec, kind), rec.envelope)


class Subscriber:
    """A client's bounded buffer of frames, woken by new frames and by the hub's clock."""

    __slots__ = ("_frames", "_limit", "_wakeup", "ended", "overflowed", "ticked")

    def __init__(self, limit: int) -> None:
        self._frames: deque[Frame] = deque()
        self._limit = limit
        self._wakeup = asyncio.Event()
        #: the buffer overflowed: the client is too slow and must reconnect
        self.overflowed = False
        #: the feed stopped (log unreachable, shutdown): the client must reconnect
        self.ended = False
        #: the hub's clock ticked (time to check heartbeats and deadlines)
        self.ticked = False

    def offer(self, frame: Frame) -> bool:
        if len(self._frames) >= self._limit:
            self.overflowed = True
            self._frames.clear()
            self._wakeup.set()
            return False
        self._frames.append(frame)
        self._wakeup.set()
        return True

    def end(self) -> None:
        self.ended = True
        self._wakeup.set()

    def tick(self) -> None:
        self.ticked = True
        self._wakeup.set()

    async def take(self) -> list[Frame] | None:
        """Everything buffered (empty once cut off or ended), or None for a bare clock tick.

        One clock for all clients instead of a timer per wait: with many clients, arming
        and cancelling a timeout around every wait costs more than the writes.
        """
        while not (self._frames or self.overflowed or self.ended or self.ticked):
            self._wakeup.clear()
            await self._wakeup.wait()
        self.ticked = False
        if not (self._frames or self.overflowed or self.ended):
            return None
        frames = list(self._frames)
        self._frames.clear()
        return frames


#: sessions whose last event position the upstream remembers (least recently active
#: forgotten first): enough for every session active within minutes
_SEEN_SESSIONS: Final = 50_000


class _Upstream:
    """The one follow of the log: where it is, whether it is up, and the last position
    it saw of each recently active session."""

    def __init__(self) -> None:
        self.last = 0
        #: session -> the position of its last event followed (most recent last)
        self.seen: OrderedDict[str, int] = OrderedDict()
        #: every event after this was followed, and those of the sessions not in
        #: ``seen`` are at or before it (the follow's start, then the last forgotten)
        self.floor = 0
        self.ready = asyncio.Event()
        self.error: str | None = None
        self.stopped = False
        self.idle_since: float | None = None
        self.task: asyncio.Task[None] | None = None


class Hub:
    def __init__(
        self,
        store: EventStore,
        *,
        buffer: int,
        tick_s: float = 1.0,
        idle_s: float = 60.0,
        on_cut: Callable[[], None] | None = None,
        on_record: Callable[[Recorded], None] | None = None,
    ) -> None:
        self.store = store
        self._buffer = buffer
        self._tick_s = tick_s
        self._idle_s = idle_s
        self._clock: asyncio.Task[None] | None = None
        self._on_cut = on_cut or (lambda: None)
        #: sees every record the upstream follows (the gateway keeps its caches current)
        self._on_record = on_record or (lambda rec: None)
        #: session -> its clients here
        self._feeds: dict[str, set[Subscriber]] = {}
        self._upstream: _Upstream | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._changed = asyncio.Condition()
        #: sessions that got a first client so far (a session's feed lasts while it has any)
        self.feeds_started = 0
        #: upstream follows of the log started so far
        self.follows_started = 0

    @property
    def upstreams(self) -> int:
        """Sessions followed for clients here (each one's events are fanned out)."""
        return len(self._feeds)

    def clients(self, session: str | None = None) -> int:
        feeds = self._feeds.values() if session is None else [self._feeds.get(session)]
        return sum(len(f) for f in feeds if f is not None)

    def has_upstream(self, session: str) -> bool:
        return session in self._feeds

    @property
    def following(self) -> bool:
        """Whether the upstream follow of the log is running."""
        return self._upstream is not None and not self._upstream.stopped

    async def join(self, session: str, after: int | None = None) -> tuple[Subscriber, int]:
        """Subscribe to ``session``'s live events; returns the buffer and ``live_from``.

        A client that has the session's events up to position ``after`` gets
        ``live_from = after`` when the upstream has followed every event since and none
        was the session's: there is nothing to read from the store in between."""
        while True:
            if self._closed:
                raise StoreUnavailable("the gateway is shutting down")
            up = self._upstream
            if up is None or up.stopped:
                up = self._upstream = _Upstream()
                self.follows_started += 1
                up.task = self._spawn(self._follow(up), name="hub-upstream")
            await up.ready.wait()
            if up.error is not None:
                raise StoreUnavailable(up.error)
            if up.stopped or self._closed:
                continue  # it stopped while we waited: start a fresh one (or refuse)
            subs = self._feeds.get(session)
            if subs is None:
                subs = self._feeds[session] = set()
                self.feeds_started += 1
            sub = Subscriber(self._buffer)
            subs.add(sub)
            up.idle_since = None
            self._notify_soon()  # no await between registering and returning: no leak
            if after is not None and after >= up.floor and up.seen.get(session, 0) <= after:
                return sub, min(after, up.last)
            return sub, up.last

    def leave(self, session: str, sub: Subscriber) -> None:
        subs = self._feeds.get(session)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._feeds[session]
        self._notify_soon()

    async def _follow(self, up: _Upstream) -> None:
        try:
            up.last = up.floor = await self.store.last_position()
            up.ready.set()
            on_record, seen = self._on_record, up.seen
            async for rec in self.store.follow_all(after=up.last):
                up.last = position = rec.position
                session = rec.session
                seen[session] = position
                seen.move_to_end(session)
                if len(seen) > _SEEN_SESSIONS:
                    up.floor = seen.popitem(last=False)[1]
                on_record(rec)
                subs = self._feeds.get(rec.session)
                if subs:
                    self._dispatch(rec.session, subs, frame_of(rec))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a background task: log, never die silently
            log.error("the upstream follow of the log stopped: %s", exc)
            up.error = "the event log is unreachable"
        finally:
            up.stopped = True
            up.ready.set()
            if self._upstream is up:
                self._upstream = None
                self._end_feeds()
            self._notify_soon()

    def _dispatch(self, session: str, subs: set[Subscriber], frame: Frame) -> None:
        cut = [sub for sub in subs if not sub.offer(frame)]
        for sub in cut:
            subs.discard(sub)
            self._on_cut()
        if cut:
            if not subs:
                del self._feeds[session]
            self._notify_soon()

    def _end_feeds(self) -> None:
        for subs in self._feeds.values():
            for sub in subs:
                sub.end()
        self._feeds.clear()
        self._notify_soon()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the clock that wakes every client for heartbeats and deadlines."""
        if self._clock is None:
            self._clock = asyncio.create_task(self._ticks(), name="hub-clock")

    async def _ticks(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick_s)  # a clock, not synchronisation
            for subs in list(self._feeds.values()):
                for sub in subs:
                    sub.tick()
            self._stop_if_idle(loop.time())

    def _stop_if_idle(self, now: float) -> None:
        """Stop the upstream once it has had no client for ``idle_s``."""
        up = self._upstream
        if up is None or self._feeds or not up.ready.is_set():
            return
        if up.idle_since is None:
            up.idle_since = now
        elif now - up.idle_since >= self._idle_s:
            self._stop_upstream()

    def _stop_upstream(self) -> None:
        up, self._upstream = self._upstream, None
        if up is not None:
            up.stopped = True
            if up.task is not None:
                up.task.cancel()

    def end_all(self) -> None:
        """Refuse new clients and end every stream (shutdown): clients get a retry hint."""
        self._closed = True
        self._end_feeds()

    async def close(self) -> None:
        self.end_all()
        self._stop_upstream()
        if self._clock is not None:
            self._clock.cancel()
            self._tasks.add(self._clock)
            self._clock = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(
        self, coro: Coroutine[Any, Any, None], name: str | None = None
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ observation

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _notify_soon(self) -> None:
        self._spawn(self._notify())

    async def settled(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever clients or feeds change)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(predicate)
