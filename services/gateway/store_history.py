"""The default :class:`HistoryReader`: the sessions list straight from the event store.

The list of an owner's sessions comes from an in-memory index fed by one
``follow_all(kinds={"session_started"})`` per gateway process; it needs nothing but the
log. (A session itself is always read by folding its events: ``history.read_session``.)
The projections' reader replaces this when the gateway is configured to use them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Callable

from threadline.base.errors import StoreError, StoreUnavailable, ThreadlineError
from threadline.events.schema import SessionStarted
from threadline.events.store import EventStore, Recorded
from threadline.services.gateway.history import InvalidCursor
from threadline.services.gateway.models import SessionPage, SessionSummary

log = logging.getLogger(__name__)


def _order(summary: SessionSummary) -> tuple[int, str]:
    return summary.created_at, summary.id


class SessionIndex:
    """Sessions per owner, in log order, from ``session_started`` events."""

    def __init__(self, on_started: Callable[[str, str], None] | None = None) -> None:
        self._on_started = on_started or (lambda session, owner: None)
        self._by_owner: dict[str, list[SessionSummary]] = {}
        self._known: set[str] = set()
        #: the newest ``session_started`` position seen
        self.position = 0
        self._changed = asyncio.Condition()

    async def add(self, rec: Recorded) -> None:
        event = rec.event
        if isinstance(event, SessionStarted) and rec.session not in self._known:
            self._known.add(rec.session)
            summary = SessionSummary(
                id=rec.session,
                owner=event.owner,
                title=event.title,
                provider=event.provider,
                model=event.model,
                created_at=rec.envelope.at,
                position=rec.position,
            )
            rows = self._by_owner.setdefault(event.owner, [])
            bisect.insort(rows, summary, key=_order)
            self._on_started(rec.session, event.owner)
        async with self._changed:
            self.position = max(self.position, rec.position)
            self._changed.notify_all()

    def page(self, owner: str, *, limit: int, cursor: str | None) -> SessionPage:
        """Newest first. A cursor is ``<created_at>.<session>`` of the last row shown (the
        projections' format too, so a cursor survives swapping readers)."""
        rows = self._by_owner.get(owner, [])
        end = len(rows)
        if cursor is not None:
            at, _, session = cursor.partition(".")
            if not at.isdigit() or not session:
                raise InvalidCursor(cursor)
            end = bisect.bisect_left(rows, (int(at), session), key=_order)
        start = max(0, end - limit)
        chosen = rows[start:end][::-1]
        last = chosen[-1] if chosen else None
        more = start > 0 and last is not None
        return SessionPage(
            sessions=chosen, next_cursor=f"{last.created_at}.{last.id}" if more and last else None
        )

    async def reached(self, position: int, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: self.position >= position)
        except TimeoutError:
            return False
        return True


class StoreHistory:
    """Lists sessions from the event store; keeps the session index while started.

    ``on_started(session, owner)`` is called for every session the index learns of
    (the gateway primes its owner cache with it, saving a read per session).
    """

    def __init__(
        self, store: EventStore, *, on_started: Callable[[str, str], None] | None = None
    ) -> None:
        self.store = store
        self.index = SessionIndex(on_started)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="gateway-session-index")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        try:
            async for rec in self.store.follow_all(kinds={"session_started"}):
                await self.index.add(rec)
        except ThreadlineError as exc:
            log.error("the session index stopped following the log: %s", exc)

    async def list_sessions(self, owner: str, *, limit: int, cursor: str | None) -> SessionPage:
        return self.index.page(owner, limit=limit, cursor=cursor)

    async def wait(self, position: int, *, timeout_s: float) -> bool:
        """Sessions are read from the store directly, so only the index can lag.

        The index is caught up with ``position`` once it has seen the
        ``session_started`` stored there (positions handed out by ``POST /v1/sessions``)
        or any later one; positions of other kinds only need to be in the log.
        """
        if self.index.position >= position:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                rec = await self._stored(position)
        except TimeoutError:
            return False
        if rec.position != position or rec.kind != "session_started":
            return True
        return await self.index.reached(position, timeout_s)

    async def _stored(self, position: int) -> Recorded:
        try:
            return await self.store.get(position)
        except StoreUnavailable:
            raise
        except StoreError:
            pass  # not stored yet: wait for it to be
        async with contextlib.aclosing(self.store.follow_all(after=position - 1)) as tail:
            async for rec in tail:
                return rec
        raise StoreError("the log ended")  # pragma: no cover - follow_all never ends
