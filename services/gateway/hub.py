"""Fan-out: one upstream follow per session per process, shared by all its SSE clients.

The first client of a session starts a *feed*: it reads the session's head position
``H`` and follows ``store.follow(session, after=H)`` (which yields only stored
events). Each event is framed once and offered to every subscriber's bounded buffer;
offering never waits. A subscriber whose buffer is full is cut off (it gets a
``retry:`` hint and reconnects with ``Last-Event-ID``), so a slow client never delays
the others. The feed stops when its last subscriber leaves.

A subscriber joins with ``live_from``: the feed's newest dispatched position (or H).
Everything after it arrives in the buffer; anything the client is missing up to it
is replayed from the store separately (:mod:`~threadline.services.gateway.sse`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

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


def frame_of(rec: Recorded) -> Frame:
    raw = rec.raw
    if b"\n" in raw or b"\r" in raw:  # never from our encoder; keep the framing safe anyway
        raw = codec.encode(rec.envelope)
    data = b"id: %d\nevent: %s\ndata: %s\n\n" % (rec.position, rec.kind.encode(), raw)
    return Frame(rec.position, rec.kind, data, rec.envelope)


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


class _Feed:
    def __init__(self, session: str) -> None:
        self.session = session
        self.subscribers: set[Subscriber] = set()
        self.joining = 0
        self.last = 0
        self.ready = asyncio.Event()
        self.error: str | None = None
        self.stopped = False
        self.task: asyncio.Task[None] | None = None


class Hub:
    def __init__(
        self,
        store: EventStore,
        *,
        buffer: int,
        tick_s: float = 1.0,
        on_cut: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._buffer = buffer
        self._tick_s = tick_s
        self._clock: asyncio.Task[None] | None = None
        self._on_cut = on_cut or (lambda: None)
        self._feeds: dict[str, _Feed] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False
        self._changed = asyncio.Condition()
        #: upstream follows started so far (one per session with clients at a time)
        self.feeds_started = 0

    @property
    def upstreams(self) -> int:
        """Upstream follows running (one per session with clients)."""
        return len(self._feeds)

    def clients(self, session: str | None = None) -> int:
        feeds = self._feeds.values() if session is None else [self._feeds.get(session)]
        return sum(len(f.subscribers) for f in feeds if f is not None)

    def has_upstream(self, session: str) -> bool:
        return session in self._feeds

    async def join(self, session: str) -> tuple[Subscriber, int]:
        """Subscribe to ``session``'s live events; returns the buffer and ``live_from``."""
        while True:
            if self._closed:
                raise StoreUnavailable("the gateway is shutting down")
            feed = self._feeds.get(session)
            if feed is None:
                feed = self._feeds[session] = _Feed(session)
                self.feeds_started += 1
                feed.task = asyncio.create_task(self._run(feed), name=f"hub-feed-{session}")
            feed.joining += 1
            try:
                await feed.ready.wait()
            except BaseException:
                feed.joining -= 1
                self._stop_if_unused(feed)
                raise
            feed.joining -= 1
            if feed.error is not None:
                raise StoreUnavailable(feed.error)
            if feed.stopped:
                continue  # it stopped while we waited: start a fresh one
            sub = Subscriber(self._buffer)
            feed.subscribers.add(sub)
            self._notify_soon()  # no await between registering and returning: no leak
            return sub, feed.last

    def leave(self, session: str, sub: Subscriber) -> None:
        feed = self._feeds.get(session)
        if feed is not None:
            feed.subscribers.discard(sub)
            self._stop_if_unused(feed)
        self._notify_soon()

    def _stop_if_unused(self, feed: _Feed) -> None:
        if feed.subscribers or feed.joining or feed.stopped:
            return
        feed.stopped = True
        if self._feeds.get(feed.session) is feed:
            del self._feeds[feed.session]
        if feed.task is not None and not feed.task.done():
            feed.task.cancel()
            self._stopping.add(feed.task)
            feed.task.add_done_callback(self._stopping.discard)

    async def _run(self, feed: _Feed) -> None:
        try:
            head = await self.store.head(feed.session)
            feed.last = head.position
            feed.ready.set()
            async for rec in self.store.follow(feed.session, after=head.position):
                self._dispatch(feed, frame_of(rec))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a background task: log, never die silently
            log.error("upstream follow of session %s stopped: %s", feed.session, exc)
            feed.error = "the event log is unreachable"
        finally:
            feed.stopped = True
            if self._feeds.get(feed.session) is feed:
                del self._feeds[feed.session]
            for sub in feed.subscribers:
                sub.end()
            feed.subscribers.clear()
            feed.ready.set()
            self._notify_soon()

    def _dispatch(self, feed: _Feed, frame: Frame) -> None:
        feed.last = frame.position
        cut = [sub for sub in feed.subscribers if not sub.offer(frame)]
        for sub in cut:
            feed.subscribers.discard(sub)
            self._on_cut()
        if cut:
            self._stop_if_unused(feed)
            self._notify_soon()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the clock that wakes every client for heartbeats and deadlines."""
        if self._clock is None:
            self._clock = asyncio.create_task(self._ticks(), name="hub-clock")

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)  # a clock, not synchronisation
            for feed in list(self._feeds.values()):
                for sub in feed.subscribers:
                    sub.tick()

    def end_all(self) -> None:
        """Refuse new clients and end every stream (shutdown): clients get a retry hint."""
        self._closed = True
        for feed in list(self._feeds.values()):
            for sub in feed.subscribers:
                sub.end()
            feed.subscribers.clear()
            self._stop_if_unused(feed)

    async def close(self) -> None:
        self.end_all()
        tasks = [f.task for f in self._feeds.values() if f.task is not None] + list(self._stopping)
        if self._clock is not None:
            tasks.append(self._clock)
            self._clock = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ observation

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _notify_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self._notify())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def settled(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever clients or feeds change)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(predicate)
