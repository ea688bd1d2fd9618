"""Reading a JetStream stream in order: replay, then live, with no gap and no duplicate.

A :class:`Tail` drives an ephemeral, ack-less push consumer (flow control and idle
heartbeats on) the way an ordered consumer does, but owns its recovery: it remembers
the last stream sequence it yielded and, on a consumer-sequence gap, a missed
heartbeat, a reconnect or a server restart, drops the consumer and creates a new one
starting right after that sequence. Only stored messages reach a consumer, so a
rejected or deduplicated publish is never seen (unlike a core subscription).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from threadline.base.aio import cancelled_meanwhile
from threadline.base.errors import StoreUnavailable
from threadline.events.store import Stored

log = logging.getLogger(__name__)

_MAX_BACKOFF_S: Final = 2.0
_PENDING_MSGS: Final = 65_536


class _Reset(Exception):
    """The consumer lost its place; start a new one after the last yielded sequence."""


class _Inbox:
    """One consumer's delivered messages: a list swapped out whole, and a future while
    waiting. Hand-written because it is on every replayed record's path: an
    ``asyncio.Queue`` (a put and a get per message) and nats-py's ``Msg.metadata`` (a
    dataclass per message) made a 10,000-event replay read 51k records/s instead of
    94k at 19af2a4 (docs/benchmarks.md, "Against an earlier commit, in one run")."""

    __slots__ = ("_waiter", "msgs")

    def __init__(self) -> None:
        self.msgs: list[Msg] = []
        self._waiter: asyncio.Future[None] | None = None

    async def put(self, msg: Msg) -> None:  # the subscription's callback
        self.msgs.append(msg)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take(self) -> list[Msg]:
        msgs, self.msgs = self.msgs, []
        return msgs

    async def wait(self) -> None:
        """Until a message has arrived."""
        if self.msgs:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


def _sequences(reply: str) -> tuple[int, int]:
    """The stream and consumer sequences in a ``$JS.ACK`` reply subject (see
    :class:`_Inbox` for why not ``Msg.metadata``)."""
    tokens = reply.split(".")
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>  (v1), or
    # $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>.<r>
    at = 5 if len(tokens) == 9 else 7
    return int(tokens[at]), int(tokens[at + 1])


class Tail:
    """An ordered read of ``filters`` after stream sequence ``after``.

    With ``until`` it stops once it has delivered the event at that stream sequence (the
    caller's idea of the end, which must match ``filters``; nothing at or below ``after``
    ends it at once); otherwise it follows live until closed. A consumer on a replica
    that lags simply delivers later: the end does not depend on what it holds.
    """

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        stream: str,
        filters: Sequence[str],
        *,
        after: int = 0,
        until: int | None = None,
        heartbeat_s: float = 2.0,
    ) -> None:
        self._nc = nc
        self._js = js  # shared by every tail on the connection
        self._stream = stream
        self._filters = list(filters)
        self._last = after
        self._until = until
        self._heartbeat_s = heartbeat_s

    async def __aiter__(self) -> AsyncGenerator[Stored, None]:
        backoff = 0.05
        while not self._done():
            try:
                async for item in self._run_consumer():
                    backoff = 0.05
                    yield item
                return
            except _Reset:
                continue
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                if self._nc.is_closed:
                    raise StoreUnavailable("NATS connection closed") from None
                if self._until is not None:
                    raise StoreUnavailable(f"reading the stream failed: {exc!r}") from None
                log.debug("tail of %s restarts after %r", self._filters, exc)
                await asyncio.sleep(backoff)  # reconnect backoff, not synchronisation
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _run_consumer(self) -> AsyncGenerator[Stored, None]:
        """One consumer's deliveries: drain what has arrived without waiting; wait
        (bounded by the heartbeat) when nothing has. Missing heartbeats mean the
        consumer is gone. (One generator, not a draining one inside this: each layer
        costs every record a resumption on the follow path, docs/benchmarks.md.)"""
        # a fresh deliver subject: nats-server binds a push consumer only to a
        # subscription on exactly that subject, not to a wildcard
        inbox = _Inbox()
        sub = await self._nc.subscribe(
            self._nc.new_inbox(), cb=inbox.put, pending_msgs_limit=_PENDING_MSGS
        )
        name: str | None = None
        expected_cseq = 1
        timeout = self._heartbeat_s * 3
        try:
            name = await self._add_consumer(sub.subject)
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        await inbox.wait()
                except TimeoutError:
                    raise _Reset from None
                for msg in inbox.take():  # all that has arrived, under one timeout
                    if not msg.reply.startswith("$JS.ACK."):  # a heartbeat or flow control
                        await self._control(msg)
                        continue
                    stream_seq, consumer_seq = _sequences(msg.reply)
                    if consumer_seq != expected_cseq:
                        raise _Reset
                    expected_cseq += 1
                    if stream_seq > self._last:
                        self._last = stream_seq
                        yield Stored(stream_seq, msg.subject, msg.data)
                    if self._done():
                        return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            if name is not None and not self._nc.is_closed:
                with contextlib.suppress(Exception):
                    await self._js.delete_consumer(self._stream, name)

    async def _add_consumer(self, deliver_subject: str) -> str:
        config = ConsumerConfig(
            deliver_subject=deliver_subject,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if self._last else DeliverPolicy.ALL,
            opt_start_seq=self._last + 1 if self._last else None,
            ack_policy=AckPolicy.NONE,
            flow_control=True,
            idle_heartbeat=self._heartbeat_s,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=max(30.0, self._heartbeat_s * 5),
            filter_subject=self._filters[0] if len(self._filters) == 1 else None,
            filter_subjects=self._filters if len(self._filters) > 1 else None,
        )
        info = await self._js.add_consumer(self._stream, config=config)
        cancelled_meanwhile()  # a nats-py request: see base/aio
        assert info.name is not None
        return info.name

    def _done(self) -> bool:
        return self._until is not None and self._last >= self._until

    async def _control(self, msg: Msg) -> None:
        """Answer flow control and stall notices; heartbeats just keep us alive."""
        if msg.reply:  # flow control request
            await self._nc.publish(msg.reply, b"")
        if stalled := (msg.headers or {}).get("Nats-Consumer-Stalled"):
            await self._nc.publish(stalled, b"")
