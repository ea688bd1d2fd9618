"""An in-memory event store: the same contract as JetStream, for tests and tools."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Collection
from functools import partial

from threadline.base.errors import StoreError
from threadline.events import codec
from threadline.events.store import (
    DEFAULT_MAX_EVENT_BYTES,
    EventStore,
    Head,
    PublishResult,
    Recorded,
    WrongLastPosition,
    recorded_from_bytes,
)


class MemoryEventStore(EventStore):
    """Keeps every record in a list; positions start at 1 like JetStream sequences."""

    def __init__(
        self, *, prefix: str = "tl", max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> None:
        super().__init__(prefix=prefix, max_event_bytes=max_event_bytes)
        self._log: list[Recorded] = []
        self._by_session: dict[str, list[Recorded]] = {}
        self._msg_ids: dict[str, int] = {}
        self._appended = asyncio.Condition()

    async def _load_head(self, session: str) -> Head:
        records = self._by_session.get(session)
        if not records:
            return Head(0, 0, codec.genesis_hash(session))
        last = records[-1]
        return Head(last.version, last.position, last.hash)

    async def _publish(
        self, subject: str, data: bytes, msg_id: str, expected_position: int, session: str
    ) -> PublishResult:
        if msg_id in self._msg_ids:
            return PublishResult(self._msg_ids[msg_id], duplicate=True)
        records = self._by_session.setdefault(session, [])
        last = records[-1].position if records else 0
        if last != expected_position:
            raise WrongLastPosition(last)
        rec = recorded_from_bytes(len(self._log) + 1, data)
        self._log.append(rec)
        records.append(rec)
        self._msg_ids[msg_id] = rec.position
        async with self._appended:
            self._appended.notify_all()
        return PublishResult(rec.position)

    async def get(self, position: int) -> Recorded:
        if not 1 <= position <= len(self._log):
            raise StoreError(f"no event at position {position}")
        return self._log[position - 1]

    async def read(
        self, session: str, *, from_version: int = 1, to_version: int | None = None
    ) -> AsyncGenerator[Recorded, None]:
        for rec in list(self._by_session.get(session, ())):
            if rec.version < from_version:
                continue
            if to_version is not None and rec.version > to_version:
                return
            yield rec

    async def follow(self, session: str, *, after: int = 0) -> AsyncGenerator[Recorded, None]:
        async for rec in self._tail(after, lambda r: r.session == session):
            yield rec

    async def follow_all(
        self, *, kinds: Collection[str] | None = None, after: int = 0
    ) -> AsyncGenerator[Recorded, None]:
        wanted = frozenset(kinds) if kinds is not None else None
        async for rec in self._tail(after, lambda r: wanted is None or r.kind in wanted):
            yield rec

    async def _tail(
        self, after: int, want: Callable[[Recorded], bool]
    ) -> AsyncGenerator[Recorded, None]:
        seen = after  # positions are 1-based: the record at index i has position i + 1
        while True:
            while seen < len(self._log):
                rec = self._log[seen]
                seen += 1
                if want(rec):
                    yield rec
            async with self._appended:
                await self._appended.wait_for(partial(_grew, self._log, seen))

    async def last_position(self) -> int:
        return len(self._log)

    def raw_log(self) -> list[Recorded]:
        """Every record in position order (for tests and tools)."""
        return list(self._log)


def _grew(log: list[Recorded], seen: int) -> bool:
    return len(log) > seen
