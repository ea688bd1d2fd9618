"""The event store port: append with optimistic concurrency, read, follow.

Two adapters implement it and pass one contract suite (``tests/events/contract.py``):
:class:`~threadline.events.memory.MemoryEventStore` and
:class:`~threadline.events.jetstream.JetStreamEventStore`. What is common to both
(version numbers, the hash chain, idempotency keys, size limits, retry on conflict)
lives here; an adapter only provides the storage primitives.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Sequence
from typing import Final, NamedTuple, TypeVar

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from threadline.base.errors import (
    ConcurrencyError,
    CorruptEvent,
    InvalidField,
    PayloadTooLarge,
    SessionNotFound,
)
from threadline.base.metrics import default_registry
from threadline.events import codec
from threadline.events.ids import new_id, validate_session_id
from threadline.events.schema import (
    SCHEMA_VERSION,
    Envelope,
    Event,
    ForkOrigin,
    SessionStarted,
    kind_of,
)
from threadline.events.sealing import Keyring, open_envelope, record_aad
from threadline.events.signing import REJECTED, Signer, TrustPolicy

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENT_BYTES: Final = 512 * 1024
_HEAD_CACHE_SIZE: Final = 10_000
_ANY_VERSION_RETRIES: Final = 20
T = TypeVar("T")


def keep_newest(lru: OrderedDict[str, T], key: str, value: T, most: int = _HEAD_CACHE_SIZE) -> None:
    """``lru[key] = value``, as its newest entry; the oldest one goes beyond ``most`` entries."""
    lru[key] = value
    lru.move_to_end(key)
    if len(lru) > most:
        lru.popitem(last=False)


#: a content key's id and its cipher (events/sealing.py)
SealingKey = tuple[str, AESGCM]


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event to append, with what the envelope needs besides version and chain.

    ``key`` is the idempotency key: appending the same key to the same session twice
    stores it once. It defaults to a fresh unique id, made when the ``NewEvent`` is
    built, so retrying the same object is safe; callers that may re-create an event
    after a crash pass a deterministic key (e.g. ``"<turn>/<attempt>/started"``).
    """

    event: Event
    actor: str = "system"
    turn: str | None = None
    attempt: int | None = None
    key: str = msgspec.field(default_factory=new_id)
    #: a fork's copy: the session and version of the event copied (``Envelope.copied_from``)
    copied_from: ForkOrigin | None = None


class Recorded(msgspec.Struct, frozen=True):
    """A stored event: its global position (JetStream sequence), envelope and bytes."""

    position: int
    envelope: Envelope
    hash: str
    raw: bytes

    @property
    def session(self) -> str:
        return self.envelope.session

    @property
    def version(self) -> int:
        return self.envelope.version

    @property
    def event(self) -> Event:
        return self.envelope.event

    @property
    def kind(self) -> str:
        return kind_of(self.envelope.event)

    @property
    def turn(self) -> str | None:
        return self.envelope.turn

    @property
    def attempt(self) -> int | None:
        return self.envelope.attempt


class Stored(NamedTuple):
    """A record as the stream holds it: position, subject and bytes."""

    position: int
    subject: str
    data: bytes


class Quarantined(msgspec.Struct, frozen=True):
    """A stored record no reader can use: undecodable, written with a newer schema, or
    under a subject its envelope disagrees with. Readers step over it (``read``,
    ``follow`` and ``follow_all`` never yield one; :meth:`EventStore.entries` does).
    ``session`` is its subject's; ``version`` the one its bytes claim (None: none)."""

    position: int
    session: str
    version: int | None
    hash: str
    raw: bytes
    reason: str


QUARANTINED: Final = default_registry().counter(
    "threadline_events_quarantined_total",
    "Stored records a reader stepped over: undecodable, of a newer schema, or filed "
    "under another session's or kind's subject.",
)


def decode_record(
    stored: Stored,
    trust: TrustPolicy | None = None,
    *,
    keyring: Keyring | None = None,
    opened: bool = True,
) -> Recorded:
    """The one decoder of stored records: the envelope, which must agree with the
    subject it was stored under (``<prefix>.<session>.<kind>``) and, given a ``trust``
    policy, be signed by a key it allows to write it; else :class:`CorruptEvent`. A
    sealed event is then opened with ``keyring`` (default: the process's,
    :func:`~threadline.events.sealing.installed`) when its key is there, else it stays
    erased; ``opened`` False leaves it as stored."""
    position, subject, data = stored
    envelope = codec.decode(data, position)
    _, session, kind = subject.rsplit(".", 2)
    if session != envelope.session or kind != kind_of(envelope.event):
        raise CorruptEvent(position, f"its envelope disagrees with its subject {subject!r}")
    rec = Recorded(position, envelope, codec.record_hash(data), data)
    if trust is not None:
        untrusted(rec, trust)
    return open_recorded(rec, keyring) if opened and envelope.sealed is not None else rec


#: how the reason of a record refused for its signature starts
SIGNATURE_REASON: Final = "signature: "


def untrusted(rec: Recorded, trust: TrustPolicy) -> None:
    """:class:`CorruptEvent` (counted) unless ``trust`` allows the record's signer."""
    reason = trust.check(rec.raw, rec.envelope, rec.position)
    if reason is not None:
        REJECTED.inc(by="reader")
        raise CorruptEvent(rec.position, SIGNATURE_REASON + reason)


def open_recorded(rec: Recorded, keyring: Keyring | None = None) -> Recorded:
    """``rec`` with its sealed content opened, when it has some and the key is here."""
    if rec.envelope.sealed is None:
        return rec
    envelope = open_envelope(rec.envelope, keyring)
    return rec if envelope is rec.envelope else Recorded(rec.position, envelope, rec.hash, rec.raw)


def read_record(
    stored: Stored,
    trust: TrustPolicy | None = None,
    *,
    keyring: Keyring | None = None,
    opened: bool = True,
) -> Recorded | Quarantined:
    """:func:`decode_record`, or the record quarantined (logged and counted)."""
    try:
        return decode_record(stored, trust, keyring=keyring, opened=opened)
    except CorruptEvent as exc:
        reason = exc.reason
    QUARANTINED.inc()
    log.warning("quarantined the record at position %d: %s", stored.position, reason)
    session = stored.subject.rsplit(".", 2)[-2]
    version, hash_ = codec.claimed_version(stored.data, session), codec.record_hash(stored.data)
    return Quarantined(stored.position, session, version, hash_, stored.data, reason)


async def _readable(
    entries: AsyncIterator[Recorded | Quarantined],
) -> AsyncGenerator[Recorded, None]:
    async with contextlib.aclosing(entries):  # type: ignore[type-var]
        async for entry in entries:
            if isinstance(entry, Recorded):
                yield entry


async def records_at(store: EventStore, session: str, version: int) -> list[Recorded]:
    """The session's events up to and including ``version``, which must exist
    (:class:`SessionNotFound`, or :class:`InvalidField` naming ``version``)."""
    validate_session_id(session)
    if version < 1:
        raise InvalidField("version", f"must be 1 or more, not {version}")
    async with contextlib.aclosing(store.read(session, to_version=version)) as read:
        records = [rec async for rec in read]
    if not records:
        raise SessionNotFound(f"session {session!r} has no events")
    if records[-1].version < version:
        raise InvalidField(
            "version",
            f"session {session!r} has {records[-1].version} events; there is no version {version}",
        )
    return records


class Head(msgspec.Struct, frozen=True):
    """Where a session ends: its last version, that event's position, and its hash."""

    version: int
    position: int
    hash: str


class WrongLastPosition(Exception):
    """Raised by an adapter's ``_publish`` when the session's last position moved."""


class PublishResult(msgspec.Struct, frozen=True):
    position: int
    duplicate: bool = False


def subject_for(prefix: str, session: str, kind: str) -> str:
    return f"{prefix}.{session}.{kind}"


#: where the log's own records (signed checkpoints, events/checkpoint.py; erasures,
#: events/erasure.py) sit: the token in place of a session id, and their kinds (no
#: session event has them)
LOG_TOKEN: Final = "_log"
CHECKPOINT_KIND: Final = "checkpoint"
ERASURE_KIND: Final = "erasure"


def checkpoint_subject(prefix: str) -> str:
    return subject_for(prefix, LOG_TOKEN, CHECKPOINT_KIND)


def erasure_subject(prefix: str) -> str:
    return subject_for(prefix, LOG_TOKEN, ERASURE_KIND)


def is_checkpoint_subject(subject: str) -> bool:
    """Whether a stored record is a checkpoint: a leaf of the log's tree, no session's
    event (session readers and the projector step over it)."""
    return subject.endswith(f".{LOG_TOKEN}.{CHECKPOINT_KIND}")


def is_erasure_subject(subject: str) -> bool:
    return subject.endswith(f".{LOG_TOKEN}.{ERASURE_KIND}")


def is_log_subject(subject: str) -> bool:
    """Whether a stored record is the log's own (a checkpoint, an erasure), no
    session's event: session readers and the projector step over it."""
    return subject.rsplit(".", 2)[-2] == LOG_TOKEN


class EventStore(abc.ABC):
    """Append-only, per-session versioned, hash-chained event log.

    ``signer``: the key this writer signs its appends with (events/signing.py); ``trust``:
    the deployment's trust policy, under which reads quarantine every record without a
    valid signature from a key allowed to write it. Neither: an unsigned deployment."""

    def __init__(
        self,
        *,
        prefix: str = "tl",
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        signer: Signer | None = None,
        trust: TrustPolicy | None = None,
    ):
        self.prefix = prefix
        self.max_event_bytes = max_event_bytes
        self.signer = signer
        self.trust = trust
        self._heads: OrderedDict[str, Head] = OrderedDict()
        #: seals new events' personal content, opens what is read (None: neither, but
        #: readers still use the process's keyring: events/sealing.py)
        self.keyring: Keyring | None = None
        self._owners: OrderedDict[str, str] = OrderedDict()
        # Locks live as long as someone holds or waits on them.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # ----------------------------------------------------------------- primitives

    @abc.abstractmethod
    async def _load_head(self, session: str) -> Head:
        """The session's head as stored (version 0 and the genesis hash if empty)."""

    @abc.abstractmethod
    async def _publish(
        self, subject: str, data: bytes, msg_id: str, expected_position: int, session: str
    ) -> PublishResult:
        """Store ``data`` iff the session's last position is ``expected_position``."""

    @abc.abstractmethod
    async def get(self, position: int) -> Recorded:
        """The record at a global position (:class:`CorruptEvent` if it is quarantined)."""

    @abc.abstractmethod
    def _read(
        self, session: str, from_version: int, to_version: int | None, after: int
    ) -> AsyncGenerator[Recorded | Quarantined, None]:
        """:meth:`entries` with a valid session, ``from_version >= 1`` and ``after >= 0``;
        what it costs must not grow with the events outside the range."""

    @abc.abstractmethod
    def _follow(self, session: str, after: int) -> AsyncGenerator[Recorded, None]:
        """:meth:`follow` with a valid session: the adapter steps over quarantined
        records itself (in its own loop: a filtering generator around it would cost
        every followed record one more resumption)."""

    @abc.abstractmethod
    def follow_all(
        self, *, kinds: Collection[str] | None = None, after: int = 0
    ) -> AsyncGenerator[Recorded, None]:
        """Every session's events (optionally only some kinds) after ``after``, live."""

    @abc.abstractmethod
    async def last_position(self) -> int:
        """The position of the newest event in the store (0 when empty)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has nothing to release."""

    async def config_problems(self) -> list[str]:
        """How the storage's configuration now differs from what Threadline made (each
        naming the setting; empty: as made). The default has nothing to configure."""
        return []

    # ----------------------------------------------------------------- shared logic

    def entries(
        self,
        session: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        after: int = 0,
    ) -> AsyncGenerator[Recorded | Quarantined, None]:
        """The session's records as stored now, then stop: versions ``from_version`` to
        ``to_version`` (default: the head), and only those after position ``after``
        (the position of the last event a caller has seen), with the quarantined ones
        among them. Bounded: reading ten events costs about the same whether the
        session holds ten or ten thousand."""
        validate_session_id(session)
        return self._read(session, max(from_version, 1), to_version, max(after, 0))

    def read(
        self,
        session: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        after: int = 0,
    ) -> AsyncGenerator[Recorded, None]:
        """:meth:`entries` without the quarantined records."""
        entries = self.entries(
            session, from_version=from_version, to_version=to_version, after=after
        )
        return _readable(entries)

    def follow(self, session: str, *, after: int = 0) -> AsyncGenerator[Recorded, None]:
        """The session's events after position ``after``, then live, forever (stepping
        over quarantined records)."""
        validate_session_id(session)
        return self._follow(session, after)

    async def head(self, session: str) -> Head:
        validate_session_id(session)
        return await self._load_head(session)

    async def load(self, session: str) -> list[Recorded]:
        return [r async for r in self.read(session)]

    async def append(
        self,
        session: str,
        events: NewEvent | Sequence[NewEvent],
        *,
        expected_version: int | None = None,
    ) -> list[Recorded]:
        """Append events to a session, in order.

        ``expected_version`` is the version the caller last saw (0: the session must
        not exist yet); if the session has moved on, :class:`ConcurrencyError` is
        raised and nothing is appended. ``None`` appends after whatever is there,
        retrying internally on conflicts. Several events are appended one after the
        other, each checked against the one before; they are not atomic as a group.
        A repeated key returns the already stored record instead of a new one: with an
        ``expected_version``, always (the key is looked up in the events since that
        version); without one, within the stream's duplicate window (15 minutes by
        default), after which the server has forgotten the key.
        """
        validate_session_id(session)
        batch = [events] if isinstance(events, NewEvent) else list(events)
        bodies = [self._fits(codec.encode(e.event)) for e in batch]  # too large: none lands
        # personal content is sealed with its owner's key for this month (none: sealing is
        # off, or the session has no owner, i.e. no start)
        key, keyring = None, self.keyring
        if keyring is not None and keyring.enabled and (owner := await self._owner(session, batch)):
            key = await keyring.writer_key(owner, time.time_ns() // 1000)
        # one append at a time per session in this process
        lock = self._locks.get(session)
        if lock is None:  # not a Lock made and dropped at every append
            lock = self._locks[session] = asyncio.Lock()
        async with lock:
            out: list[Recorded] = []
            for new, body in zip(batch, bodies, strict=True):
                rec = await self._append_one(session, new, body, expected_version, key)
                out.append(rec)
                if expected_version is not None:
                    expected_version = rec.version
            return out

    def _fits(self, data: bytes) -> bytes:
        """``data``, unless it is larger than an event may be (:class:`PayloadTooLarge`)."""
        if len(data) > self.max_event_bytes:
            raise PayloadTooLarge(len(data), self.max_event_bytes)
        return data

    async def _owner(self, session: str, batch: list[NewEvent]) -> str | None:
        """The session's owner: from the batch's start, else its first record (read
        once per session, then cached)."""
        owner = next((n.event.owner for n in batch if isinstance(n.event, SessionStarted)), None)
        if owner is None:
            owner = self._owners.get(session)
        if owner is None:
            reading = self.read(session, to_version=1)
            async with contextlib.aclosing(reading) as first:
                async for rec in first:
                    if isinstance(rec.event, SessionStarted):
                        owner = rec.event.owner
        if owner:
            keep_newest(self._owners, session, owner)
        return owner

    async def _append_one(
        self,
        session: str,
        new: NewEvent,
        body: bytes,
        expected: int | None,
        key: SealingKey | None = None,
    ) -> Recorded:
        msg_id = f"{session}:{new.key}"
        for _ in range(_ANY_VERSION_RETRIES):
            head = await self._cached_head(session, new=expected == 0)
            if expected is not None and head.version != expected:
                seen, head = head, await self._refresh_head(session)
                if head.version != expected:
                    return await self._existing_or_conflict(session, new.key, expected, seen, head)
            envelope, data = self._seal(session, head, new, body, key)
            subject = subject_for(self.prefix, session, kind_of(new.event))
            try:
                result = await self._publish(subject, data, msg_id, head.position, session)
            except WrongLastPosition:
                seen, head = head, await self._refresh_head(session)
                if expected is not None:
                    return await self._existing_or_conflict(session, new.key, expected, seen, head)
                # Again on the fresh head, same Msg-Id: if an earlier call stored this key
                # (within the duplicate window), the server now answers "duplicate". No
                # scan of the session: a busy one would make every stale head expensive.
                continue
            if result.duplicate:
                return await self.get(result.position)
            rec = Recorded(result.position, envelope, codec.record_hash(data), data)
            keep_newest(self._heads, session, Head(rec.version, rec.position, rec.hash))
            return rec
        raise ConcurrencyError(session, -1)

    def _seal(
        self, session: str, head: Head, new: NewEvent, body: bytes, key: SealingKey | None = None
    ) -> tuple[Envelope, bytes]:
        """The envelope for the next version and its stored bytes (event encoded once).
        With a ``key``, the event's personal content is sealed first (the stored event
        is its stub; the envelope returned holds the event itself); signed last, over
        the final bytes, when the store has a signer."""
        fields: dict[str, object] = {
            "schema": SCHEMA_VERSION,
            "session": session,
            "version": head.version + 1,
            "at": time.time_ns() // 1000,
            "actor": new.actor,
            "key": new.key,
            "prev": head.hash,
            "turn": new.turn,
            "attempt": new.attempt,
            "copied_from": new.copied_from,
            "sealed": None,
        }
        if key is not None and self.keyring is not None:
            aad = record_aad(session, head.version + 1, kind_of(new.event))
            sealed = self.keyring.seal(new.event, body, key, aad)
            if sealed is not None:
                body, fields["sealed"] = sealed
        data = codec.encode_sealed(fields, body)
        if self.signer is not None:
            fields["sig"], data = self.signer.seal(data)
        return Envelope(event=new.event, **fields), self._fits(data)  # type: ignore[arg-type]

    async def _existing_or_conflict(
        self, session: str, key: str, expected: int, seen: Head, head: Head
    ) -> Recorded:
        """The record ``key`` already has among the events after version ``expected``
        (a retry of an append that landed), else :class:`ConcurrencyError`. Whatever the
        server's duplicate window says, it is looked up in the log, read from the last
        head this store saw (``seen``) when that is not past ``expected``: the cost is
        the events written since, not the session."""
        after = seen.position if seen.version <= expected else 0
        async with contextlib.aclosing(
            self.read(session, from_version=expected + 1, after=after)
        ) as since:
            async for rec in since:
                if rec.envelope.key == key:
                    return rec
        raise ConcurrencyError(session, expected, head.version)

    async def _cached_head(self, session: str, *, new: bool = False) -> Head:
        """The session's head as last seen here, else read; for a session the caller
        says is ``new``, the empty one: if it is not new the append is refused, and only
        then is its head read."""
        head = self._heads.get(session)
        if head is None:
            if new:
                return Head(0, 0, codec.genesis_hash(session))
            return await self._refresh_head(session)
        self._heads.move_to_end(session)
        return head

    async def _refresh_head(self, session: str) -> Head:
        head = await self._load_head(session)
        keep_newest(self._heads, session, head)
        return head

    def _saw_head(self, session: str, head: Head) -> None:
        """A head just read from the leader (at the start of a read): kept unless this
        store already knows a later one (its own append may have landed meanwhile), so
        an append that follows the read (a command after reading the state, a turn after
        folding the session) publishes at once instead of being refused as stale or
        reading the same head again."""
        known = self._heads.get(session)
        if known is None or known.position < head.position:
            keep_newest(self._heads, session, head)
