"""The event store on NATS JetStream.

One stream holds every session: subjects ``<prefix>.<session>.<kind>``, file storage,
``deny_delete`` and ``deny_purge``, no rollups, ``discard: new`` and a duplicate window
longer than any client retry. Appends carry ``Nats-Expected-Last-Subject-Sequence``
with ``Nats-Expected-Last-Subject-Sequence-Subject: <prefix>.<session>.>`` (optimistic
concurrency per session, NATS 2.11+) and a ``Nats-Msg-Id`` derived from the event's
idempotency key. nats-py errors are translated here into Threadline's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Collection
from functools import partial
from typing import Final

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from threadline.base.config import StreamSettings
from threadline.base.errors import PayloadTooLarge, StoreError, StoreUnavailable
from threadline.base.redact import without_credentials
from threadline.events import codec
from threadline.events.direct import MAX_BATCH, ApiError, DirectReads, locate
from threadline.events.readiness import appended
from threadline.events.signing import Signer, TrustPolicy
from threadline.events.store import (
    EventStore,
    Head,
    PublishResult,
    Quarantined,
    Recorded,
    Stored,
    WrongLastPosition,
    decode_record,
    is_log_subject,
    read_record,
)
from threadline.events.stream import ensure_stream, live_problems, unavailable
from threadline.events.tail import Tail

log = logging.getLogger(__name__)

_SLOT_S: Final = 0.25
#: "wrong last sequence": 10071 on a single server, 10164 from a replicated stream
_WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})
_MAX_PAYLOAD_EXCEEDED: Final = 10054  # message size exceeds maximum allowed
#: no room: the account's storage (10002), the server's (10023), a reservation (10047,
#: 10028); the same append may be retried once there is room again
_NO_ROOM: Final = frozenset({10002, 10023, 10028, 10047})


class _PubAck(msgspec.Struct, frozen=True):
    seq: int = 0
    duplicate: bool = False
    error: ApiError | None = None


_ack_decoder: Final = msgspec.json.Decoder(_PubAck)


class JetStreamEventStore(EventStore):
    """:class:`EventStore` over one JetStream stream. Build it with :meth:`connect`."""

    def __init__(
        self,
        nc: Client,
        settings: StreamSettings,
        *,
        owns_connection: bool = False,
        heartbeat_s: float = 2.0,
        timeout_s: float = 5.0,
        signer: Signer | None = None,
        trust: TrustPolicy | None = None,
    ) -> None:
        super().__init__(
            prefix=settings.prefix,
            max_event_bytes=settings.max_event_bytes,
            signer=signer,
            trust=trust,
        )
        self.nc = nc
        self.settings = settings
        self._owns_connection = owns_connection
        self._heartbeat_s = heartbeat_s
        self._timeout_s = timeout_s
        self._acks: dict[str, asyncio.Future[_PubAck]] = {}
        self._reply_prefix = ""
        self._reply_counter = 0
        self._append_failed = False  # the last append failed for want of the store
        self._deadlines: dict[int, list[str]] = {}
        self._connection_log: _ConnectionLog | None = None
        self.allow_unsafe = False
        self._js = nc.jetstream()
        self._reads = DirectReads(nc, settings.name, timeout_s=timeout_s)

    @classmethod
    async def connect(
        cls,
        url: str | list[str],
        settings: StreamSettings | None = None,
        *,
        ensure: bool = True,
        allow_unsafe: bool = False,
        heartbeat_s: float = 2.0,
        timeout_s: float = 5.0,
        name: str = "threadline",
        signer: Signer | None = None,
        trust: TrustPolicy | None = None,
    ) -> JetStreamEventStore:
        """Connect to NATS and (by default) create or check the stream."""
        settings = settings or StreamSettings()
        where = without_credentials(url if isinstance(url, str) else ",".join(url))
        if isinstance(url, str) and "," in url:  # "nats://a:4222,nats://b:4222"
            url = [u.strip() for u in url.split(",") if u.strip()]
        callbacks = _ConnectionLog()
        try:
            nc = await nats.connect(
                url,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,
                allow_reconnect=True,
                connect_timeout=timeout_s,
                error_cb=callbacks.error,
                disconnected_cb=callbacks.disconnected,
                reconnected_cb=callbacks.reconnected,
            )
        except (nats.errors.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot connect to NATS at {where}: {exc}") from None
        store = cls(
            nc,
            settings,
            owns_connection=True,
            heartbeat_s=heartbeat_s,
            timeout_s=timeout_s,
            signer=signer,
            trust=trust,
        )
        store._connection_log = callbacks
        store.allow_unsafe = allow_unsafe
        try:
            if ensure:
                await ensure_stream(nc, settings, allow_unsafe=allow_unsafe)
            await store._start_replies()
        except BaseException:
            await nc.close()
            raise
        return store

    async def config_problems(self) -> list[str]:
        """The live stream checked as at start-up (:func:`live_problems`); nothing when
        connected with ``allow_unsafe`` (development and tamper tests)."""
        return [] if self.allow_unsafe else await live_problems(self.nc, self.settings)

    async def close(self) -> None:
        if self._connection_log is not None:
            self._connection_log.closing = True
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(StoreUnavailable("event store closed"))
        self._acks.clear()
        if self._owns_connection and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except (nats.errors.Error, OSError):  # reconnecting or gone: just close
                await self.nc.close()

    # ------------------------------------------------------------------ appends

    async def _start_replies(self) -> None:
        self._reply_prefix = self.nc.new_inbox() + "."
        await self.nc.subscribe(self._reply_prefix + "*", cb=self._on_ack)

    async def _on_ack(self, msg: Msg) -> None:
        fut = self._acks.pop(msg.subject[len(self._reply_prefix) :], None)
        if fut is None or fut.done():
            return
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            fut.set_exception(StoreUnavailable(f"no stream listens on {self.prefix}.>"))
            return
        try:
            fut.set_result(_ack_decoder.decode(msg.data))
        except msgspec.DecodeError as exc:
            fut.set_exception(StoreError(f"unreadable publish acknowledgement: {exc}"))

    async def _publish(
        self, subject: str, data: bytes, msg_id: str, expected_position: int, session: str
    ) -> PublishResult:
        """Publish and wait for the acknowledgement; the outcome is kept for readiness
        (appends fail until one succeeds)."""
        if not self._reply_prefix:
            await self._start_replies()
        self._reply_counter += 1
        token = str(self._reply_counter)
        fut: asyncio.Future[_PubAck] = asyncio.get_running_loop().create_future()
        self._acks[token] = fut
        self._arm_deadline(token)
        headers = {
            "Nats-Msg-Id": msg_id,
            "Nats-Expected-Last-Subject-Sequence": str(expected_position),
            "Nats-Expected-Last-Subject-Sequence-Subject": f"{self.prefix}.{session}.>",
        }
        try:
            await self.nc.publish(subject, data, reply=self._reply_prefix + token, headers=headers)
            ack = await fut
        except TimeoutError:
            raise self._unavailable(
                f"no acknowledgement within {self._timeout_s} s; the event may or may not "
                "be stored: retry with the same event (its key makes the retry safe)"
            ) from None
        except nats.errors.Error as exc:
            raise self._unavailable(f"publish failed: {exc!r}") from None
        except StoreUnavailable as exc:  # no stream listens (_on_ack)
            raise self._unavailable(str(exc)) from None
        finally:
            self._acks.pop(token, None)
        if ack.error is not None:
            error = self._translate(ack.error, len(data))
            if isinstance(error, StoreUnavailable):
                raise self._unavailable(str(error))
            raise error
        if self._append_failed:  # told once, not at every append
            appended(self, None)
            self._append_failed = False
        return PublishResult(ack.seq, duplicate=ack.duplicate)

    def _unavailable(self, why: str) -> StoreUnavailable:
        """The failure, kept for readiness."""
        appended(self, why)
        self._append_failed = True
        return StoreUnavailable(why)

    def _arm_deadline(self, token: str) -> None:
        """Time out unanswered publishes with one timer per 1/4 s slot, not one per publish."""
        loop = asyncio.get_running_loop()
        slot = int((loop.time() + self._timeout_s) / _SLOT_S) + 1
        bucket = self._deadlines.get(slot)
        if bucket is None:
            bucket = self._deadlines[slot] = []
            loop.call_at(slot * _SLOT_S, self._expire, slot)
        bucket.append(token)

    def _expire(self, slot: int) -> None:
        for token in self._deadlines.pop(slot, ()):
            fut = self._acks.pop(token, None)
            if fut is not None and not fut.done():
                fut.set_exception(TimeoutError())

    def _translate(self, error: ApiError, size: int) -> Exception:
        if error.err_code in _WRONG_LAST_SEQUENCE:
            return WrongLastPosition(error.description)
        if error.err_code == _MAX_PAYLOAD_EXCEEDED:
            return PayloadTooLarge(size, self.max_event_bytes)
        if error.err_code in _NO_ROOM:
            return StoreUnavailable(f"no room: {error.description} ({error.err_code})")
        return StoreError(f"JetStream refused the append: {error.description} ({error.err_code})")

    # ------------------------------------------------------------------ reads

    async def _load_head(self, session: str) -> Head:
        found = await self._reads.get(subject=self._filter(session), leader=True)
        if found is None:
            return Head(0, 0, codec.genesis_hash(session))
        last = read_record(found, opened=False)  # its version and hash
        version = last.version
        if version is None:  # quarantined without a version (rare): the one before it
            version = await self._version_before(session, found.position)
        return Head(version, found.position, last.hash)

    async def _version_before(self, session: str, position: int) -> int:
        """The version of the session's last record before ``position`` that has one
        (a read of the session: only while its newest record is unreadable garbage)."""
        version = 0
        tail = self._tail([self._filter(session)], 0, until=position - 1)
        async with contextlib.aclosing(tail):
            async for stored in tail:
                version = codec.claimed_version(stored.data, session) or version
        return version

    async def get(self, position: int) -> Recorded:
        found = await self._reads.get(position)
        if found is None:  # not there, or not there yet on the replica that answered
            found = await self._reads.get(position, leader=True)
        if found is None:
            raise StoreError(f"no event at position {position}")
        return decode_record(found, self.trust, keyring=self.keyring)

    async def _read(
        self, session: str, from_version: int, to_version: int | None, after: int
    ) -> AsyncGenerator[Recorded | Quarantined, None]:
        """From where ``from_version`` is (:func:`~threadline.events.direct.locate`, a
        few direct gets) to the head the leader has now, never from the session's start.
        A quarantined record without a version comes with the versions around it."""
        head = await self._load_head(session)
        self._saw_head(session, head)
        last = head.version if to_version is None else min(to_version, head.version)
        beyond = from_version > last  # only quarantined records after `after`, if any
        if after >= head.position or (beyond and not (after and last == head.version)):
            return
        subjects = self._filter(session)
        probe = partial(self._reads.probe, subjects)
        start, extra = (
            (after, 0)
            if beyond
            else await locate(probe, from_version, (head.position, head.version), after)
        )
        count = max(last - from_version + 1, 1) + extra  # exactly; at most, when `after` cut it
        found = self._records_after(subjects, start, head.position, count, exact=not after)
        seen = from_version - 1 if after else 0  # the last version read
        end_version = last if last < head.version else None  # None: to the head's position
        async with contextlib.aclosing(found):
            async for stored in found:
                entry = read_record(stored, self.trust, keyring=self.keyring)
                if (entry.version or seen + 1) >= from_version:
                    yield entry
                seen = entry.version or seen
                if stored.position >= head.position or seen == end_version:
                    return

    async def _records_after(
        self, subjects: str, seen: int, end: int, count: int, *, exact: bool = True
    ) -> AsyncGenerator[Stored, None]:
        """What matches ``subjects`` after position ``seen`` up to ``end``, ``count`` of
        them (or at most that many, not ``exact``): up to a batch's worth by one batched
        direct get; more, or what that did not bring (a replica that lags, a start found
        only roughly), by a consumer. A consumer costs a round trip to create, then reads
        at the stream's pace: a direct get's answer carries six more headers per record,
        and parsing headers is nats-py's main cost per record."""
        if count <= MAX_BATCH or not exact:
            for item in await self._reads.batch(subjects, seen, min(count, MAX_BATCH)):
                seen = item.position
                yield item
        if seen < end:
            tail = self._tail([subjects], seen, until=end)
            async with contextlib.aclosing(tail):
                async for item in tail:
                    yield item

    async def _follow(self, session: str, after: int) -> AsyncGenerator[Recorded, None]:
        tail = self._tail([self._filter(session)], after)
        async with contextlib.aclosing(tail):  # closing us drops the consumer at once
            async for stored in tail:
                if isinstance(
                    entry := read_record(stored, self.trust, keyring=self.keyring), Recorded
                ):
                    yield entry

    async def follow_all(
        self, *, kinds: Collection[str] | None = None, after: int = 0
    ) -> AsyncGenerator[Recorded, None]:
        filters = [f"{self.prefix}.*.{k}" for k in sorted(kinds)] if kinds else [f"{self.prefix}.>"]
        tail = self._tail(filters, after)
        async with contextlib.aclosing(tail):
            async for stored in tail:
                if is_log_subject(stored.subject):  # the log's, no session's
                    continue
                if isinstance(
                    entry := read_record(stored, self.trust, keyring=self.keyring), Recorded
                ):
                    yield entry

    def _filter(self, session: str) -> str:
        return f"{self.prefix}.{session}.*"

    async def follow_raw(
        self, filters: list[str], *, after: int = 0, until_end: bool = False
    ) -> AsyncGenerator[Stored, None]:
        """Undecoded records, for tools that must see corrupt data: live, or (``until_end``)
        up to the newest one the leader holds now (a consumer may sit on a replica still
        catching up, so its own idea of the end is not enough)."""
        until = None
        if until_end:
            ends = [await self._reads.get(subject=f, leader=True) for f in filters]
            until = max((found.position for found in ends if found is not None), default=0)
        tail = self._tail(filters, after, until=until)
        async with contextlib.aclosing(tail):
            async for item in tail:
                yield item

    def _tail(
        self, filters: list[str], after: int, *, until: int | None = None
    ) -> AsyncGenerator[Stored, None]:
        tail = Tail(
            self.nc,
            self._js,
            self.settings.name,
            filters,
            after=after,
            until=until,
            heartbeat_s=self._heartbeat_s,
        )
        return tail.__aiter__()

    async def last_position(self) -> int:
        with unavailable("stream info"):
            info = await self._js.stream_info(self.settings.name)
        return info.state.last_seq


class _ConnectionLog:
    """nats-py callbacks: one short log line per event (the default prints tracebacks)."""

    def __init__(self) -> None:
        self.closing = False

    async def error(self, exc: Exception) -> None:
        if not self.closing:
            log.warning("NATS: %s", exc or exc.__class__.__name__)

    async def disconnected(self) -> None:
        if not self.closing:
            log.warning("NATS connection lost; reconnecting")

    async def reconnected(self) -> None:
        log.info("NATS connection restored")
