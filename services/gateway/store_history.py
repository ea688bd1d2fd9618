"""The default :class:`HistoryReader`: the sessions list without the projections.

An owner's sessions are rows of a :class:`~threadline.events.directory.SessionDirectory`
(beside a JetStream stream: a key-value bucket shared by every gateway; otherwise one in
memory), kept current by one ``follow_all`` of ``session_started`` and
``session_renamed`` (the title) per gateway from the directory's checkpoint. So a
gateway's start-up reads the sessions created since the checkpoint (while no gateway
ran), not every session ever created, and holds none of them in memory; listing reads
one owner's rows (the cost grows with that owner's sessions, not the deployment's). The
first gateway on a deployment that has no directory yet reads every ``session_started``
once, to fill it.

(A session itself is read from the session cache: ``history.read_session``.) The
projections' reader replaces this when the gateway is configured to use them.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import msgspec

from threadline.base.aio import stop_task
from threadline.base.errors import StoreError, StoreUnavailable, ThreadlineError
from threadline.events.directory import MemoryDirectory, Row, SessionDirectory
from threadline.events.schema import SessionRenamed, SessionStarted
from threadline.events.sealing import ERASED, installed
from threadline.events.store import EventStore, Recorded
from threadline.projections.model import UsageReport
from threadline.projections.reader import cursor_of, parse_cursor
from threadline.services.gateway.errors import Problem
from threadline.services.gateway.history import view_of
from threadline.services.gateway.models import SessionPage, SessionSummary

log = logging.getLogger(__name__)

#: how long the follower waits before following again after the store failed
_RETRY_S: Final = 1.0
_decoder: Final = msgspec.msgpack.Decoder(SessionSummary)
#: a sealed title in the directory: this, then the sealed blob in base64
_SEALED_TITLE: Final = "\x00sealed:"
_TITLE_AAD: Final = b"threadline directory title\0"
#: what the list shows comes from these
_KINDS: Final = frozenset({"session_started", "session_renamed"})
#: the directory's checkpoint is saved at most this often while following (and when the
#: follower stops): a gateway that starts reads the log from it, and the rows it puts
#: again are the same rows, so a write per session would buy nothing
CHECKPOINT_EVERY_S: Final = 1.0


def page_of(rows: list[Row], *, limit: int, cursor: str | None) -> tuple[list[Row], bool]:
    """The rows of a page, newest first, and whether older ones remain. ``rows`` are
    sorted oldest first; the cursor is the projections' (it survives swapping readers)."""
    end = len(rows) if cursor is None else bisect.bisect_left(rows, Row(*parse_cursor(cursor)))
    start = max(0, end - limit)
    return rows[start:end][::-1], start > 0


class StoreHistory:
    """Lists sessions from ``directory`` (default: one in memory), which it keeps
    current while started. ``on_started(session, owner)`` is called for every session
    it learns of (the gateway primes its owner cache with it, saving a read per
    session). ``followed`` counts the ``session_started`` events it has read."""

    def __init__(
        self,
        store: EventStore,
        *,
        on_started: Callable[[str, str], None] | None = None,
        directory: SessionDirectory | None = None,
    ) -> None:
        self.store = store
        self.directory = directory or MemoryDirectory()
        self._on_started = on_started or (lambda session, owner: None)
        #: the log position the directory reflects, as far as this gateway knows
        self.position = 0
        self.followed = 0
        self._unsaved = 0  # the position reached, when the checkpoint is behind it
        self._save_at = 0.0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="gateway-session-index")

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        if self._unsaved:
            with contextlib.suppress(ThreadlineError):  # a later start only reads more
                await self.directory.save_checkpoint(self._unsaved)
            self._unsaved = 0

    async def _follow(self) -> None:
        while True:
            try:
                await self._reached(await self.directory.checkpoint())
                after = self.position
                async for rec in self.store.follow_all(kinds=_KINDS, after=after):
                    self.followed += 1
                    await self._add(rec)
            except StoreUnavailable as exc:
                log.warning("the session index lost the store, following again: %s", exc)
                await asyncio.sleep(_RETRY_S)  # a retry timer, not a synchronisation
            except ThreadlineError as exc:
                log.error("the session index stopped following the log: %s", exc)
                return

    async def _add(self, rec: Recorded) -> None:
        event = rec.event
        if isinstance(event, SessionStarted) and rec.version == 1:
            at, session = rec.envelope.at, rec.session
            origin = event.forked_from
            summary = view_of(
                SessionSummary, event, id=session, created_at=at, position=rec.position,
                forked_from=origin.session if origin else None,
                forked_version=origin.version if origin else 0,
            )  # fmt: skip
            summary = await self._sealed(summary, event.owner)
            await self.directory.put(event.owner, Row(at, session), msgspec.msgpack.encode(summary))
            self._on_started(rec.session, event.owner)
        elif isinstance(event, SessionRenamed):
            await self._renamed(rec.session, event.title)
        await self._checkpoint(rec.position)
        await self._reached(rec.position)

    async def _checkpoint(self, position: int) -> None:
        now = asyncio.get_running_loop().time()
        if now < self._save_at:
            self._unsaved = position
            return
        self._save_at = now + CHECKPOINT_EVERY_S
        await self.directory.save_checkpoint(position)
        self._unsaved = 0

    async def _renamed(self, session: str, title: str) -> None:
        """The session's row with its new title (its owner and row from its first event)."""
        async with contextlib.aclosing(self.store.read(session, to_version=1)) as first:
            started = [rec async for rec in first]
        if not started or not isinstance(started[0].event, SessionStarted):
            return
        owner, row = started[0].event.owner, Row(started[0].envelope.at, session)
        data = await self.directory.get(owner, row)
        if data is not None:
            renamed = msgspec.structs.replace(_decoder.decode(data), title=title)
            renamed = await self._sealed(renamed, owner)
            await self.directory.put(owner, row, msgspec.msgpack.encode(renamed))

    async def _sealed(self, summary: SessionSummary, owner: str) -> SessionSummary:
        """The summary with its title sealed as the log's is (the directory is kept in
        NATS: docs/audit.md#erasure), under the owner's key of the session's month."""
        keyring = self.store.keyring
        if keyring is None or not keyring.enabled or not summary.title:
            return summary
        aad = _TITLE_AAD + summary.id.encode()
        blob = await keyring.seal_blob(owner, summary.created_at, summary.title.encode(), aad)
        title = _SEALED_TITLE + base64.b64encode(blob).decode()
        return msgspec.structs.replace(summary, title=title)

    def _opened(self, summary: SessionSummary) -> SessionSummary:
        if not summary.title.startswith(_SEALED_TITLE):
            return summary
        keyring = self.store.keyring or installed()
        blob = base64.b64decode(summary.title.removeprefix(_SEALED_TITLE))
        title = (
            None if keyring is None else keyring.open_blob(blob, _TITLE_AAD + summary.id.encode())
        )
        return msgspec.structs.replace(summary, title=ERASED if title is None else title.decode())

    async def _reached(self, position: int) -> None:
        async with self._changed:
            self.position = max(self.position, position)
            self._changed.notify_all()

    async def list_sessions(self, owner: str, *, limit: int, cursor: str | None) -> SessionPage:
        rows = sorted(await self.directory.rows(owner))
        chosen, more = page_of(rows, limit=limit, cursor=cursor)
        found = await asyncio.gather(*(self.directory.get(owner, row) for row in chosen))
        sessions = [self._opened(_decoder.decode(data)) for data in found if data is not None]
        next_cursor = cursor_of(*chosen[-1]) if more else None  # more: chosen is not empty
        return SessionPage(sessions=sessions, next_cursor=next_cursor)

    async def usage(self, owner: str, *, day: str | None) -> UsageReport:
        raise Problem(
            501, "not_implemented", "usage needs the projections; this gateway reads the log"
        )

    async def wait(self, position: int, *, timeout_s: float) -> bool:
        """Sessions are read from the store directly, so only the list can lag.

        The list is caught up with ``position`` once it has seen the
        ``session_started`` or ``session_renamed`` stored there (positions handed out by
        ``POST /v1/sessions`` and ``PATCH``) or any later one; positions of other kinds
        only need to be in the log.
        """
        if self.position >= position:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                rec = await self._stored(position)
                if rec.position == position and rec.kind in _KINDS:
                    async with self._changed:
                        await self._changed.wait_for(lambda: self.position >= position)
        except TimeoutError:
            return False
        return True

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
