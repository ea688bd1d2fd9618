"""An in-memory event store: the same contract as JetStream, for tests and tools.

It is faithful where the store's guarantees come from the server (checked against a
real nats-server by ``tests/events/test_fidelity.py``):

* an append is checked in nats-server's order: the expected last position of the
  session first, then the idempotency key (``Nats-Msg-Id``), so a repeated key with a
  stale expected position is refused as a conflict, not answered as a duplicate. A
  clustered JetStream (a stream in a cluster, at any replica count) checks the key
  first: ``clustered=True`` does that;
* keys are forgotten after the duplicate window (``duplicate_window_s``, by default the
  stream's), measured on ``clock`` (injectable, so tests need not wait);
* positions are global and start at 1, like stream sequences; only stored appends are
  ever read or followed.

Reads are bounded like JetStream's: a session's records are kept in a list indexed by
version. :meth:`another_client` gives a second handle on the same log (its own head
cache and per-session locks), like a second process connected to the same stream.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Collection, Sequence
from functools import partial
from operator import attrgetter
from typing import Final

from threadline.base.config import StreamSettings
from threadline.base.errors import StoreError
from threadline.events import codec
from threadline.events.signing import Signer, TrustPolicy
from threadline.events.store import (
    DEFAULT_MAX_EVENT_BYTES,
    EventStore,
    Head,
    PublishResult,
    Quarantined,
    Recorded,
    Stored,
    WrongLastPosition,
    decode_record,
    open_recorded,
    read_record,
    subject_for,
    untrusted,
)

DEFAULT_DUPLICATE_WINDOW_S: Final = StreamSettings().duplicate_window_s


class _Log:
    """What the stream holds, shared by every handle on it."""

    def __init__(self, window_s: float, clock: Callable[[], float], clustered: bool) -> None:
        self.window_s = window_s
        self.clock = clock
        self.clustered = clustered
        self.records: list[Recorded] = []
        self.sessions: dict[str, list[Recorded]] = {}
        self.msg_ids: dict[str, int] = {}
        self.stored_at: deque[tuple[float, str]] = deque()  # Msg-Ids, oldest first
        self.appended = asyncio.Condition()

    def duplicate_of(self, msg_id: str) -> int | None:
        """The position stored under ``msg_id`` within the duplicate window, if any."""
        now = self.clock()
        while self.stored_at and now - self.stored_at[0][0] >= self.window_s:
            del self.msg_ids[self.stored_at.popleft()[1]]
        return self.msg_ids.get(msg_id)

    def store(self, session: str, subject: str, data: bytes, msg_id: str) -> Recorded:
        rec = decode_record(Stored(len(self.records) + 1, subject, data), opened=False)
        self.records.append(rec)
        self.sessions.setdefault(session, []).append(rec)
        self.msg_ids[msg_id] = rec.position
        self.stored_at.append((self.clock(), msg_id))
        return rec


class MemoryEventStore(EventStore):
    """Keeps every record in lists; positions start at 1 like JetStream sequences."""

    def __init__(
        self,
        *,
        prefix: str = "tl",
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        clustered: bool = False,
        signer: Signer | None = None,
        trust: TrustPolicy | None = None,
    ) -> None:
        super().__init__(prefix=prefix, max_event_bytes=max_event_bytes, signer=signer, trust=trust)
        self._log = _Log(duplicate_window_s, clock, clustered)

    def another_client(
        self, *, signer: Signer | None = None, trust: TrustPolicy | None = None
    ) -> MemoryEventStore:
        """A second handle on the same log, like another process on the same stream
        (with its own key and trust policy, if any)."""
        other = MemoryEventStore(
            prefix=self.prefix, max_event_bytes=self.max_event_bytes, signer=signer, trust=trust
        )
        other._log = self._log
        other.keyring = self.keyring
        return other

    def _screen(self, rec: Recorded) -> Recorded | Quarantined:
        """``rec`` as this handle reads it: quarantined when its trust policy refuses it,
        its sealed content opened when this handle's keyring has the key."""
        if self.trust is None:
            return open_recorded(rec, self.keyring)
        return read_record(
            Stored(rec.position, subject_for(self.prefix, rec.session, rec.kind), rec.raw),
            self.trust,
            keyring=self.keyring,
        )

    async def _load_head(self, session: str) -> Head:
        records = self._log.sessions.get(session)
        if not records:
            return Head(0, 0, codec.genesis_hash(session))
        last = records[-1]
        return Head(last.version, last.position, last.hash)

    async def _publish(
        self, subject: str, data: bytes, msg_id: str, expected_position: int, session: str
    ) -> PublishResult:
        log = self._log
        if log.clustered and (stored := log.duplicate_of(msg_id)) is not None:
            return PublishResult(stored, duplicate=True)
        records = log.sessions.get(session)
        last = records[-1].position if records else 0
        if last != expected_position:
            raise WrongLastPosition(f"wrong last sequence: {last}")
        if (stored := log.duplicate_of(msg_id)) is not None:
            return PublishResult(stored, duplicate=True)
        rec = log.store(session, subject, data, msg_id)
        async with log.appended:
            log.appended.notify_all()
        return PublishResult(rec.position)

    async def get(self, position: int) -> Recorded:
        if not 1 <= position <= len(self._log.records):
            raise StoreError(f"no event at position {position}")
        rec = self._log.records[position - 1]
        if self.trust is not None:
            untrusted(rec, self.trust)
        return open_recorded(rec, self.keyring)

    async def _read(
        self, session: str, from_version: int, to_version: int | None, after: int
    ) -> AsyncGenerator[Recorded | Quarantined, None]:
        records = self._log.sessions.get(session, [])
        start = max(from_version - 1, _first_after(records, after))
        stop = len(records) if to_version is None else max(0, min(to_version, len(records)))
        for rec in records[start:stop]:  # a copy: what is stored now
            yield self._screen(rec)

    def _follow(self, session: str, after: int) -> AsyncGenerator[Recorded, None]:
        return self._tail(lambda: self._log.sessions.get(session, ()), after, None)

    def follow_all(
        self, *, kinds: Collection[str] | None = None, after: int = 0
    ) -> AsyncGenerator[Recorded, None]:
        wanted = None if kinds is None else frozenset(kinds)
        return self._tail(lambda: self._log.records, after, wanted)

    async def _tail(
        self,
        source: Callable[[], Sequence[Recorded]],
        after: int,
        kinds: frozenset[str] | None,
    ) -> AsyncGenerator[Recorded, None]:
        """What ``source`` holds after ``after`` (only ``kinds``), then live; quarantined
        records stepped over."""
        seen = _first_after(source(), after)  # index of the next record to yield
        while True:
            async with self._log.appended:
                await self._log.appended.wait_for(partial(_grew, source, seen))
            new = source()[seen:]  # a copy: what is stored now
            seen += len(new)
            for rec in new:
                if (kinds is None or rec.kind in kinds) and isinstance(
                    entry := self._screen(rec), Recorded
                ):
                    yield entry

    async def last_position(self) -> int:
        return len(self._log.records)


def _first_after(records: Sequence[Recorded], position: int) -> int:
    """The index of the first record after ``position`` (records in position order)."""
    return bisect.bisect_right(records, position, key=attrgetter("position"))


def _grew(source: Callable[[], Sequence[Recorded]], seen: int) -> bool:
    return len(source()) > seen
