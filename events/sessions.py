"""Session state without replay: :class:`SessionCache`.

The agent worker (each turn), the command layer (``SessionCommands.state``) and the
gateway (``GET /v1/sessions/{id}``) ask :meth:`SessionCache.get` for a session's state
at the store's head. The cache keeps the states of the sessions used last (LRU, bounded
by ``max_sessions``), each with the version, position and hash it was folded to; a hit
reads only the events after that position (a bounded read, ``EventStore.read``) and
applies them, so what a call costs depends on what happened since the last one, not on
the session's length. A miss (a cold or evicted session) starts from the session's
snapshot (:mod:`threadline.events.snapshots`) when there is one that matches the log,
else from version 1. A caller holding a record of the session at a version below
``snapshot_every`` (the agent, its delivery's user message) says so (``seen``): no
snapshot can be that old, so a cold get does not ask the snapshot store (a session
that grew past it since only costs a longer fold).

Every ``snapshot_every`` events folded past a session's last snapshot, or a quarter of
the snapshot's version when that is more, the state is written as a new one by a
background task (at most :data:`MAX_PENDING_SNAPSHOTS` at a time; when that many are
pending the write is left for later; encoded in a thread): a snapshot's bytes (which
grow with the session) are paid once per that many events, so what they cost per event
stays the same however long the session grows, and never on the caller's path; a cold
load folds at most that many events past its snapshot.

:meth:`get` returns the caller's own state (``SessionState.copy``: O(open turns) plus a
few pointer copies, ended turns are shared and never change), which it may keep and
advance; the cache's state is never handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Final

from threadline.base.errors import SessionNotFound
from threadline.events.fold import SessionState, fold
from threadline.events.ids import validate_session_id
from threadline.events.sealing import on_erasure
from threadline.events.snapshots import (
    Snapshot,
    SnapshotStore,
    decode_snapshot,
    encode_snapshot,
    snapshot_state,
)
from threadline.events.store import EventStore, Quarantined, Recorded, keep_newest

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS: Final = 2_000
DEFAULT_SNAPSHOT_EVERY: Final = 200
#: snapshot writes under way at most (more are left for later)
MAX_PENDING_SNAPSHOTS: Final = 4
#: the events between snapshots are at least the last snapshot's version over this
SNAPSHOT_SPACING: Final = 4


@dataclass(slots=True)
class CacheStats:
    """What the cache did (for tests and figures): ``applied`` counts events folded."""

    hits: int = 0
    misses: int = 0
    applied: int = 0
    snapshots_loaded: int = 0
    snapshots_discarded: int = 0
    snapshots_saved: int = 0


@dataclass(slots=True)
class _Entry:
    state: SessionState
    #: the hash of the record at ``state.version``
    hash: str
    #: the version of the newest snapshot written or loaded (0: none)
    snapshot: int


class SessionCache:
    """The states of recently used sessions, kept at the head by folding new events."""

    def __init__(
        self,
        store: EventStore,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        snapshots: SnapshotStore | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    ) -> None:
        self.store = store
        self.max_sessions = max(1, max_sessions)
        self.snapshots = snapshots
        self.snapshot_every = max(1, snapshot_every)
        self.stats = CacheStats()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._saving: dict[str, asyncio.Task[None]] = {}
        # states fold content: when keys are erased, every cached state is dropped (rare)
        on_erasure(partial(_forget, weakref.ref(self)))

    def __contains__(self, session: str) -> bool:
        return session in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, session: str, *, seen: int = 0) -> SessionState:
        """The session's state at the store's head now, the caller's own copy.
        Raises :class:`SessionNotFound` for a session without events. ``seen``: a
        version of the session the caller holds a record of (0: none)."""
        entry = self._entries.get(session)
        if entry is None:
            validate_session_id(session)
            self.stats.misses += 1
            entry = await self._cold(session, young=0 < seen < self.snapshot_every)
            keep_newest(self._entries, session, entry, self.max_sessions)
        else:
            self.stats.hits += 1
            self._entries.move_to_end(session)
            if not await self._advance(session, entry):
                self._entries.pop(session, None)  # the log is not what we folded
                entry = await self._fold(session)
                keep_newest(self._entries, session, entry, self.max_sessions)
        self._maybe_snapshot(session, entry)
        return entry.state.copy()

    def appended(self, rec: Recorded) -> None:
        """Fold a record of the log this process holds (it has just appended it, or was
        delivered it), when it follows on from what the cache holds, or starts the
        session (a new session's first :meth:`get` then reads only what came after it,
        not the snapshot store and the log). Anything else is left to :meth:`get`,
        which reads the log."""
        entry = self._entries.get(rec.session)
        if entry is None:
            if rec.version == 1:
                entry = _Entry(SessionState(session=rec.session), "", 0)
                self._apply(entry, rec)
                keep_newest(self._entries, rec.session, entry, self.max_sessions)
        elif rec.version == entry.state.version + 1 and rec.envelope.prev == entry.hash:
            self._apply(entry, rec)

    async def open(self) -> None:
        """Open the snapshot store now, so the first cold sessions can use it."""
        if self.snapshots is not None:
            await self.snapshots.open()

    async def flush(self) -> None:
        """Wait for the snapshot writes under way."""
        while self._saving:
            await asyncio.gather(*self._saving.values(), return_exceptions=True)

    async def close(self) -> None:
        """Stop the snapshot writes under way (a lost snapshot only costs time)."""
        tasks = list(self._saving.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ folding

    async def _advance(self, session: str, entry: _Entry) -> bool:
        """Fold the events after the entry's; False if they do not follow on from it."""
        state = entry.state
        reading = self.store.entries(session, from_version=state.version + 1, after=state.position)
        async with contextlib.aclosing(reading) as records:
            async for rec in records:
                if rec.position <= state.position:
                    continue  # folded meanwhile by a concurrent get
                if isinstance(rec, Recorded) and (
                    rec.version != state.version + 1 or rec.envelope.prev != entry.hash
                ):
                    log.warning("session %s: the log does not follow on from version %d",
                                session, state.version)  # fmt: skip
                    return False
                self._apply(entry, rec)
        return True

    def _apply(self, entry: _Entry, rec: Recorded | Quarantined) -> None:
        fold((rec,), entry.state)
        entry.hash = rec.hash  # together with the version: no await in between
        self.stats.applied += 1

    async def _cold(self, session: str, *, young: bool = False) -> _Entry:
        """From the session's snapshot, unless it is ``young`` (seen at a version below
        any snapshot's), else from its first record."""
        snap = None if young else await self._load_snapshot(session)
        if snap is not None:
            state = snapshot_state(snap)
            if state is not None:
                entry = _Entry(state, snap.hash, snap.version)
                if await self._verified(session, entry, snap):
                    self.stats.snapshots_loaded += 1
                    return entry
            self.stats.snapshots_discarded += 1
            log.info("session %s: snapshot at version %d discarded", session, snap.version)
        return await self._fold(session)

    async def _verified(self, session: str, entry: _Entry, snap: Snapshot) -> bool:
        """Whether the log's record at the snapshot's version is the one it names; if it
        is, fold the events after it onto ``entry``."""
        reading = self.store.entries(session, from_version=snap.version, to_version=snap.version)
        async with contextlib.aclosing(reading) as records:
            found = [(r.position, r.hash) async for r in records]
        return found == [(snap.position, snap.hash)] and await self._advance(session, entry)

    async def _fold(self, session: str) -> _Entry:
        entry = _Entry(SessionState(session=session), "", 0)
        async with contextlib.aclosing(self.store.entries(session)) as records:
            async for rec in records:
                self._apply(entry, rec)
        if not entry.hash:  # no record folded
            raise SessionNotFound(f"session {session!r} has no events")
        return entry

    # ------------------------------------------------------------------ snapshots

    async def _load_snapshot(self, session: str) -> Snapshot | None:
        if self.snapshots is None:
            return None
        try:
            data = await self.snapshots.load(session)
        except Exception as exc:  # derived data: without it we only fold more
            log.warning("session %s: snapshot not loaded: %s", session, exc)
            return None
        if data is not None and (keyring := self.store.keyring) is not None:
            data = keyring.open_blob(data, _snapshot_aad(session), sealed_only=keyring.enabled)
        return None if data is None else decode_snapshot(session, data)

    def _maybe_snapshot(self, session: str, entry: _Entry) -> None:
        if (
            self.snapshots is None
            or entry.state.version - entry.snapshot
            < max(self.snapshot_every, entry.snapshot // SNAPSHOT_SPACING)
            or session in self._saving
            or len(self._saving) >= MAX_PENDING_SNAPSHOTS
        ):
            return
        entry.snapshot = entry.state.version
        task = asyncio.create_task(self._save(session, entry), name=f"snapshot-{session}")
        self._saving[session] = task
        task.add_done_callback(lambda _: self._saving.pop(session, None))

    async def _save(self, session: str, entry: _Entry) -> None:
        assert self.snapshots is not None
        # a copy shares the ended turns, which never change: safe to encode in a thread
        state, hash_ = entry.state.copy(), entry.hash  # version and hash agree here
        try:
            data = await asyncio.to_thread(encode_snapshot, state, hash_)
            keyring = self.store.keyring
            if keyring is not None and keyring.enabled and state.owner:  # it folds content
                aad = _snapshot_aad(session)
                data = await keyring.seal_blob(state.owner, state.created_at, data, aad)
            await self.snapshots.save(session, data)
        except Exception as exc:  # derived data: losing it only costs time
            log.warning("session %s: snapshot not saved: %s", session, exc)
            return
        self.stats.snapshots_saved += 1


def _snapshot_aad(session: str) -> bytes:
    return b"threadline snapshot\0" + session.encode()


def _forget(cache: weakref.ref[SessionCache], key_ids: list[str]) -> None:
    """Keys were erased: drop every cached state (they may hold what the keys sealed)."""
    found = cache()
    if found is not None:
        found._entries.clear()
