"""The work-queue port: the log's user messages handed to workers, at least once.

A :class:`WorkQueue` hands each ``user_message`` record to one worker at a time as a
:class:`Delivery`. The worker settles it with ``ack`` (done), ``nak(delay)`` (again,
later) or ``term`` (never again) and, while it works, keeps it with ``in_progress``. A
delivery neither settled nor kept alive for ``ack_wait_s`` goes out again, its
``attempts`` one higher; an ``in_progress`` that cannot be confirmed raises
:class:`~threadline.base.errors.DeliveryLost` and the worker must stop.

Two adapters: :class:`MemoryWorkQueue` (here, fed by any store's ``follow_all``) and
:class:`~threadline.events.jetstream_queue.JetStreamWorkQueue` (a durable pull consumer).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from threadline.base.errors import DeliveryLost
from threadline.events.store import EventStore, Recorded

#: the kinds of record the agents' work queue delivers: user messages, and the decisions
#: that bring a turn waiting for approval back (docs/human-in-the-loop.md)
WORK_KINDS: Final = ("user_message", "approval_granted", "approval_denied")

#: awaited before asking for more: how many deliveries the consumer can take now (at
#: least one; it waits while it can take none)
Room = Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Backlog:
    pending: int  # not delivered yet
    ack_pending: int  # delivered and not settled yet


class Delivery(abc.ABC):
    """One delivery of a record; ``attempts`` counts its deliveries (1 the first time)."""

    def __init__(self, record: Recorded, attempts: int) -> None:
        self.record = record
        self.attempts = attempts

    @abc.abstractmethod
    async def ack(self) -> None:
        """Done: never deliver it again."""

    @abc.abstractmethod
    async def nak(self, delay_s: float = 0.0) -> None:
        """Not now: deliver it again after ``delay_s``."""

    @abc.abstractmethod
    async def term(self) -> None:
        """Drop it: nothing a retry can fix."""

    @abc.abstractmethod
    async def in_progress(self) -> None:
        """Still working: restart the ack wait. Raises ``DeliveryLost`` when that
        is not confirmed (the delivery may be another worker's by now)."""


class WorkQueue(abc.ABC):
    """A named, durable queue of the log's records of ``kinds``."""

    def __init__(self, *, name: str, ack_wait_s: float, kinds: Sequence[str] = WORK_KINDS) -> None:
        self.name = name
        self.ack_wait_s = ack_wait_s
        self.kinds = tuple(kinds)

    @abc.abstractmethod
    def deliveries(self, room: Room) -> AsyncGenerator[Delivery, None]:
        """Deliveries as they come, forever; never more than ``room()`` said."""

    @abc.abstractmethod
    async def backlog(self) -> Backlog:
        """How much is waiting (for metrics)."""


@dataclass(eq=False)
class _Message:
    record: Recorded
    deliveries: int = 0
    current: MemoryDelivery | None = None  # the delivery it is out on, if any
    timer: asyncio.TimerHandle | None = None  # ack wait, or a nak's delay
    settled: bool = False


class MemoryDelivery(Delivery):
    def __init__(self, queue: MemoryWorkQueue, message: _Message) -> None:
        super().__init__(message.record, message.deliveries)
        self._queue = queue
        self._message = message

    async def ack(self) -> None:
        self._queue._settle(self._message)

    async def term(self) -> None:
        self._queue._settle(self._message)

    async def nak(self, delay_s: float = 0.0) -> None:
        self._queue._settle(self._message, again_s=delay_s)

    async def in_progress(self) -> None:
        self._queue._keep(self, self._message)


class MemoryWorkQueue(WorkQueue):
    """The JetStream consumer's behaviour in memory, where the worker relies on it: a
    durable position in the log, redelivery ``ack_wait_s`` after the last sign of life
    or a nak's delay (redeliveries before new records), ``term`` drops, delivery counts,
    at most ``max_ack_pending`` records out unsettled, any number of consumers sharing
    it. Timers, not polling. Outlives its consumers: a new one resumes where the last
    left off, and what was out unsettled is redelivered to it."""

    def __init__(
        self,
        store: EventStore,
        *,
        name: str = "memory",
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1000,
        kinds: Sequence[str] = WORK_KINDS,
    ) -> None:
        super().__init__(name=name, ack_wait_s=ack_wait_s, kinds=kinds)
        self._store = store
        self._max_ack_pending = max_ack_pending
        self._position = 0  # the last record taken from the log
        self._new: deque[_Message] = deque()
        self._due: deque[_Message] = deque()  # to be delivered again
        self._out: dict[int, _Message] = {}  # delivered and not settled, by position
        self._wake = asyncio.Event()
        self._feeder: asyncio.Task[None] | None = None
        self._consumers = 0

    async def deliveries(self, room: Room) -> AsyncGenerator[Delivery, None]:
        self._consumers += 1
        if self._feeder is None:
            self._feeder = asyncio.create_task(self._feed())
        try:
            while True:
                for _ in range(await room()):
                    yield await self._next()
        finally:
            self._consumers -= 1
            if not self._consumers and self._feeder is not None:
                self._feeder.cancel()
                self._feeder = None

    async def backlog(self) -> Backlog:
        return Backlog(pending=len(self._new), ack_pending=len(self._out))

    def expire(self, position: int) -> None:
        """The ack wait of the delivery of the record at ``position`` runs out now (as
        for a worker stalled past it): the delivery is nobody's and the record goes out
        again."""
        message = self._out.get(position)
        if message is not None and message.current is not None:
            self._unschedule(message)
            self._make_due(message)

    # ------------------------------------------------------------------ internals

    async def _feed(self) -> None:
        records = self._store.follow_all(kinds=set(self.kinds), after=self._position)
        async with contextlib.aclosing(records):
            async for rec in records:
                self._position = rec.position
                self._new.append(_Message(rec))
                self._wake.set()

    async def _next(self) -> MemoryDelivery:
        while (message := self._take()) is None:
            self._wake.clear()
            await self._wake.wait()
        message.deliveries += 1
        delivery = message.current = MemoryDelivery(self, message)
        self._schedule(message, self.ack_wait_s)
        return delivery

    def _take(self) -> _Message | None:
        if self._due:
            return self._due.popleft()
        if self._new and len(self._out) < self._max_ack_pending:
            message = self._new.popleft()
            self._out[message.record.position] = message
            return message
        return None

    def _schedule(self, message: _Message, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        message.timer = loop.call_later(delay_s, self._make_due, message)

    def _unschedule(self, message: _Message) -> None:
        if message.timer is not None:
            message.timer.cancel()
            message.timer = None
        if message in self._due:
            self._due.remove(message)

    def _make_due(self, message: _Message) -> None:
        message.timer, message.current = None, None
        self._due.append(message)
        self._wake.set()

    def _settle(self, message: _Message, *, again_s: float | None = None) -> None:
        """Done with the message (ack, term); or, ``again_s`` later, out again (nak)."""
        if message.settled:
            return
        self._unschedule(message)
        message.current = None
        if again_s is None:
            message.settled = True
            del self._out[message.record.position]
            self._wake.set()  # room under max_ack_pending
        elif again_s > 0:
            self._schedule(message, again_s)
        else:
            self._make_due(message)

    def _keep(self, delivery: MemoryDelivery, message: _Message) -> None:
        if message.settled:
            return  # as on JetStream: a heartbeat for a settled message is a no-op
        if message.current is not delivery:
            raise DeliveryLost(
                f"the record at position {message.record.position} was handed out again"
            )
        self._unschedule(message)
        self._schedule(message, self.ack_wait_s)
