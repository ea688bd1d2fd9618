"""The work queue on JetStream: a durable pull consumer on ``<prefix>.*.<kind>`` for its kinds.

Shared by any number of workers (each with one open pull request at a time, sized to
what it can take, with idle heartbeats); explicit acks, ``ack_wait`` and
``max_ack_pending`` are the consumer's. An in-progress ack is sent as a request: the
server answers it, so a deleted consumer (no responders), a lost connection or a
heartbeat later than the ack deadline (the message may be another worker's by then)
raises :class:`DeliveryLost`. nats-py errors are translated here.

The consumer is made at start-up (waiting, the same way, while the stream is missing)
and made again whenever it disappears (the stream was deleted and created again, as a
restore does, or someone deleted the consumer):
the open pull request then ends with ``409 Consumer Deleted`` and the next one finds
no responders (``503``). Until it exists again, the store's readiness problems say so
(:mod:`threadline.events.readiness`: ``/readyz`` answers 503) and it is tried again,
backing off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncGenerator, Sequence
from typing import Final

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from threadline.base.aio import cancelled_meanwhile
from threadline.base.errors import DeliveryLost, StoreError
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.readiness import problems
from threadline.events.store import Stored, decode_record
from threadline.events.stream import unavailable
from threadline.events.workqueue import WORK_KINDS, Backlog, Delivery, Room, WorkQueue

log = logging.getLogger(__name__)

_PULL_BATCH: Final = 64
_PULL_EXPIRES_NS: Final = 30 * 10**9
_HB_NS: Final = 5 * 10**9
_RECREATE_FIRST_S: Final = 0.1
_RECREATE_MAX_S: Final = 5.0
#: the store's readiness entry for its queues' consumers (one entry names every missing one)
READINESS_CHECK: Final = "work_queue"
#: per store, the consumers known missing, by name: several queues share one store (the
#: agents' and the approval deadlines'), and one coming back must not hide another
_MISSING: weakref.WeakKeyDictionary[JetStreamEventStore, dict[str, str]] = (
    weakref.WeakKeyDictionary()
)


class _ConsumerGone(Exception):
    """The pull request found no consumer (deleted, or its stream was)."""


class JetStreamDelivery(Delivery):
    def __init__(self, msg: Msg, queue: JetStreamWorkQueue) -> None:
        meta = msg.metadata
        stored = Stored(meta.sequence.stream, msg.subject, msg.data)
        super().__init__(decode_record(stored), meta.num_delivered)
        self._msg = msg
        self._queue = queue
        self._consumer = queue.consumers
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + queue.ack_wait_s

    async def ack(self) -> None:
        with unavailable("ack"):
            await self._msg.ack()

    async def nak(self, delay_s: float = 0.0) -> None:
        with unavailable("nak"):
            await self._msg.nak(delay=delay_s or None)

    async def term(self) -> None:
        with unavailable("term"):
            await self._msg.term()

    async def in_progress(self) -> None:
        sent = self._loop.time()
        left = self._deadline - sent
        if left <= 0:
            raise DeliveryLost("the ack deadline passed before the in-progress ack was sent")
        if self._consumer != self._queue.consumers:  # its successor would deliver it again
            raise DeliveryLost(f"the consumer {self._queue.name!r} is gone (made again since)")
        nc = self._queue.store.nc
        try:
            await nc.request(self._msg.reply, b"+WPI", timeout=left)
        except nats.errors.NoRespondersError:
            raise DeliveryLost(f"the consumer {self._queue.name!r} is gone") from None
        except nats.errors.TimeoutError:
            raise DeliveryLost("no in-progress ack confirmed before the ack deadline") from None
        except nats.errors.Error as exc:
            raise DeliveryLost(f"the in-progress ack failed: {exc!r}") from None
        cancelled_meanwhile()  # a nats-py request: see base/aio
        self._deadline = sent + self._queue.ack_wait_s


class JetStreamWorkQueue(WorkQueue):
    """:class:`WorkQueue` over the durable consumer ``name`` of the store's stream."""

    def __init__(
        self,
        store: JetStreamEventStore,
        *,
        name: str,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1000,
        kinds: Sequence[str] = WORK_KINDS,
    ) -> None:
        super().__init__(name=name, ack_wait_s=ack_wait_s, kinds=kinds)
        self.store = store
        self.max_ack_pending = max_ack_pending
        #: how many times the consumer was made (a delivery belongs to one of them)
        self.consumers = 0

    async def deliveries(self, room: Room) -> AsyncGenerator[Delivery, None]:
        try:
            await self._create_consumer()
        except nats.errors.Error as exc:  # the stream went between start-up and now
            await self._recreate(repr(exc))
        nc = self.store.nc
        inbox = nc.new_inbox()
        received: asyncio.Queue[Msg] = asyncio.Queue()  # unbounded: put never waits
        sub = await nc.subscribe(inbox, cb=received.put)
        try:
            while True:
                try:
                    async for msg in self._pull(received, inbox, room):
                        delivery = await self._delivery(msg)
                        if delivery is not None:
                            yield delivery
                except _ConsumerGone as gone:
                    await self._recreate(str(gone))
                    while not received.empty():  # answers to pull requests made before
                        received.get_nowait()
        finally:
            self._report(None)
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _create_consumer(self) -> None:
        """Create the durable consumer, or bind to it (the same config: nothing changes)."""
        settings = self.store.settings
        await self.store.nc.jetstream().add_consumer(
            settings.name,
            config=ConsumerConfig(
                durable_name=self.name,
                filter_subjects=[f"{settings.prefix}.*.{kind}" for kind in self.kinds],
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_s,
                max_ack_pending=self.max_ack_pending,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )
        cancelled_meanwhile()  # a nats-py request: see base/aio
        self.consumers += 1

    async def _recreate(self, why: str) -> None:
        """Make the consumer again; until that works, readiness reports it missing."""
        problem = f"consumer {self.name!r} is missing ({why})"
        self._report(problem)
        log.error("work queue: %s; re-creating it", problem)
        delay = _RECREATE_FIRST_S
        while True:
            try:
                await self._create_consumer()
            except nats.errors.Error as exc:  # the stream is gone too, or NATS is
                self._report(f"{problem}: {exc!r}")
                await asyncio.sleep(delay)  # a retry backoff, not a wait for something
                delay = min(delay * 2, _RECREATE_MAX_S)
                continue
            self._report(None)
            log.warning("work queue: consumer %r re-created; consuming again", self.name)
            return

    def _report(self, problem: str | None) -> None:
        """Set (or, with None, clear) this queue's problem in the store's readiness entry."""
        missing = _MISSING.setdefault(self.store, {})
        if problem is None:
            missing.pop(self.name, None)
        else:
            missing[self.name] = problem
        if missing:
            problems(self.store)[READINESS_CHECK] = "; ".join(v for _, v in sorted(missing.items()))
        else:
            problems(self.store).pop(READINESS_CHECK, None)

    async def _pull(
        self, received: asyncio.Queue[Msg], inbox: str, room: Room
    ) -> AsyncGenerator[Msg, None]:
        """Keep one pull request open and hand each message on as soon as it arrives
        (a fetch-and-wait loop would hold early messages back until the batch fills).
        Not ``sub.next_msg``: its ``wait_for`` can swallow a cancellation on Python 3.11
        when a message arrives at the same moment, and the worker would never stop."""
        settings = self.store.settings
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{settings.name}.{self.name}"
        requested = 0
        while True:
            if requested == 0:
                requested = min(_PULL_BATCH, await room())
                request = {
                    "batch": requested,
                    "expires": _PULL_EXPIRES_NS,
                    "idle_heartbeat": _HB_NS,
                }
                await self.store.nc.publish(next_subject, msgspec.json.encode(request), inbox)
            try:
                async with asyncio.timeout(_HB_NS / 1e9 * 3):
                    msg = await received.get()
            except TimeoutError:
                requested = 0  # no heartbeat: the request is gone (reconnect, restart)
                continue
            status = (msg.headers or {}).get("Status") if not msg.data else None
            if status == "100":
                continue  # idle heartbeat
            if status == "503" or (status == "409" and _deleted(msg)):
                raise _ConsumerGone("no responders" if status == "503" else "deleted")
            if status is not None:
                requested = 0  # 404/408/409: this pull request is over
                continue
            requested -= 1
            yield msg

    async def _delivery(self, msg: Msg) -> JetStreamDelivery | None:
        try:
            return JetStreamDelivery(msg, self)
        except StoreError as exc:  # an undecodable message: nothing a retry can fix
            log.error("dropping undecodable user message: %s", exc)
            with contextlib.suppress(nats.errors.Error):
                await msg.term()
            return None

    async def backlog(self) -> Backlog:
        with unavailable("consumer info"):
            js = self.store.nc.jetstream()
            info = await js.consumer_info(self.store.settings.name, self.name)
        return Backlog(pending=info.num_pending or 0, ack_pending=info.num_ack_pending or 0)


def _deleted(msg: Msg) -> bool:
    return "deleted" in str((msg.headers or {}).get("Description", "")).lower()
