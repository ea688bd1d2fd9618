"""The view recorder port: a tracking recorder (``eventsourcing``) that also holds the views.

A batch of events is applied in ONE transaction together with one tracking record per
view (application name = the view's name, notification id = the JetStream position of
the batch's last event). The tracking insert only moves forward (the library raises
``IntegrityError`` otherwise), so a redelivered or replayed event changes nothing.

Adapters (SQLite, PostgreSQL) provide transactions, tracking on a given cursor, and
``swap_in`` (put a rebuilt view in place). Everything else lives here, so both pass
one contract suite. All of it is synchronous: callers run it in worker threads.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Final, TypeVar

import msgspec
from eventsourcing.persistence import IntegrityError, PersistenceError, TrackingRecorder

from threadline.events.ids import new_id
from threadline.projections.batch import (
    TRANSIENT,
    BatchOutcome,
    Broken,
    EventFailed,
    Resync,
    TrackState,
    apply_view,
    decode,
)
from threadline.projections.model import ProjectionErrorRow
from threadline.projections.sql import Db, Table
from threadline.projections.views import VIEWS, Rec, View, select_views

T = TypeVar("T")

ERRORS: Final = Table(
    "projection_errors",
    (("position", "int"), ("session", "text"), ("reason", "text")),
    key=("position",),
)
META: Final = Table("projection_meta", (("key", "text"), ("value", "text")), key=("key",))


class ViewRecorder(TrackingRecorder, abc.ABC):
    """Views plus their tracking records in one database."""

    # ------------------------------------------------------------ adapter primitives

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[Db]:
        """A write transaction that excludes a concurrent ``swap_in``."""

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[Db]:
        """A read-only transaction with a consistent snapshot."""

    @abc.abstractmethod
    def _track(self, db: Db, view: str, position: int) -> None:
        """Record tracking on ``db``'s transaction; ``IntegrityError`` if not ahead."""

    @abc.abstractmethod
    def _tracked(self, db: Db, view: str) -> int:
        """The view's tracked position (0: none)."""

    @abc.abstractmethod
    def _create(self) -> None:
        """Create the tracking table, the views' tables, the errors and meta tables."""

    @abc.abstractmethod
    def swap_in(self, fresh: ViewRecorder, views: Sequence[str], *, errors: bool) -> None:
        """Replace these views (and their tracking) with ``fresh``'s, atomically."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    @abc.abstractmethod
    def drop(self) -> None:
        """Delete this database (a rebuild's scratch copy) and close."""

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the views live (a file, or a schema), without credentials."""

    # ------------------------------------------------------------ shared logic

    @staticmethod
    def all_tables() -> tuple[Table, ...]:
        return (*(t for v in VIEWS for t in v.tables), ERRORS, META)

    def setup(self) -> None:
        """Create what is missing; give a new database its generation id."""
        self._create()
        with self._write() as db:
            db.run(
                "INSERT INTO {p}projection_meta (key, value) VALUES ('generation', ?) "
                "ON CONFLICT (key) DO NOTHING",
                new_id(),
            )

    def state(self) -> TrackState:
        with self._read() as db:
            positions = {v.name: self._tracked(db, v.name) for v in VIEWS}
            return TrackState(self._generation(db), positions)

    def query(self, fn: Callable[..., T], *args: object) -> T:
        """Run a read function (``fn(db, *args)``) in a read transaction."""
        with self._read() as db:
            return fn(db, *args)

    def _generation(self, db: Db) -> str:
        row = db.one("SELECT value FROM {p}projection_meta WHERE key = 'generation'")
        return str(row[0]) if row else ""

    def apply_batch(
        self,
        raw: Sequence[tuple[int, bytes]],
        state: TrackState,
        *,
        views: Sequence[View] = VIEWS,
        halt: bool = False,
    ) -> BatchOutcome:
        """Decode and apply a batch in one transaction. Broken events become error rows
        and are then skipped, or (``halt``) end the batch before them."""
        return self._apply_items([decode(p, d) for p, d in raw], state, views, halt)

    def _apply_items(
        self, items: list[Rec | Broken], state: TrackState, views: Sequence[View], halt: bool
    ) -> BatchOutcome:
        while True:
            try:
                return self._apply_once(items, state, views, halt)
            except EventFailed as failed:
                if failed.position is None:  # not attributable: one event per transaction
                    return self._one_by_one(items, state, views, halt, failed.reason)
                items = [
                    Broken(it.position, failed.reason, it.env.session)
                    if isinstance(it, Rec) and it.position == failed.position
                    else it
                    for it in items
                ]

    def _one_by_one(
        self,
        items: list[Rec | Broken],
        state: TrackState,
        views: Sequence[View],
        halt: bool,
        reason: str,
    ) -> BatchOutcome:
        if len(items) == 1:
            it = items[0]
            session = it.env.session if isinstance(it, Rec) else it.session
            return self._apply_once([Broken(it.position, reason, session)], state, views, halt)
        errors: list[Broken] = []
        applied = 0
        for it in items:
            outcome = self._apply_items([it], state, views, halt)
            state = TrackState(state.generation, outcome.positions)
            errors += outcome.errors
            applied += outcome.applied
            if outcome.halted:
                return BatchOutcome(state.positions, tuple(errors), outcome.halted, applied)
        return BatchOutcome(state.positions, tuple(errors), None, applied)

    def _apply_once(
        self, items: list[Rec | Broken], state: TrackState, views: Sequence[View], halt: bool
    ) -> BatchOutcome:
        try:
            return self._transaction(items, state, views, halt)
        except (EventFailed, Resync, *TRANSIENT):
            raise
        except PersistenceError as exc:  # refused at commit (pipelined statements)
            raise EventFailed(None, str(exc)) from exc

    def _transaction(
        self, items: list[Rec | Broken], state: TrackState, views: Sequence[View], halt: bool
    ) -> BatchOutcome:
        cut = len(items)
        if halt:
            cut = next((i for i, it in enumerate(items) if isinstance(it, Broken)), cut)
        kept, halted = items[:cut], (items[cut] if cut < len(items) else None)
        assert halted is None or isinstance(halted, Broken)
        last = kept[-1].position if kept else 0
        seen = state.positions
        broken = [it for it in [*kept, halted] if isinstance(it, Broken)]
        broken = [b for b in broken if any(b.position > seen[v.name] for v in views)]
        positions = dict(seen)
        applied = 0
        with self._write() as db:
            if self._generation(db) != state.generation:
                raise Resync("the projections database was replaced")
            for view in views:
                if last > seen[view.name]:
                    try:
                        self._track(db, view.name, last)
                    except IntegrityError:
                        raise Resync(f"{view.name}: tracking moved on elsewhere") from None
                    positions[view.name] = last
            db.many(
                "INSERT INTO {p}projection_errors (position, session, reason) VALUES (?, ?, ?) "
                "ON CONFLICT (position) DO UPDATE SET reason = excluded.reason, "
                "session = excluded.session",
                [(b.position, b.session, b.reason) for b in broken],
            )
            for view in views:
                mine = [it for it in kept if isinstance(it, Rec) and it.position > seen[view.name]]
                if mine:
                    apply_view(db, view, mine)
                    applied = max(applied, len(mine))
        return BatchOutcome(positions, tuple(broken), halted, applied)

    # ------------------------------------------------------------ inspection

    def dump(self, views: Sequence[str] | None = None) -> str:
        """Every row of the views (and the error rows), one JSON line each, in key order:
        the same log gives the same text, whatever the batching or crashes on the way."""
        tables = [t for v in select_views(views) for t in v.tables]
        if views is None:
            tables.append(ERRORS)
        lines: list[bytes] = []
        with self._read() as db:
            for table in tables:
                for row in db.all(table.select_all()):
                    lines.append(msgspec.json.encode([table.name, list(row)]))
        return b"\n".join(lines).decode() + ("\n" if lines else "")

    def errors(self, limit: int = 100) -> list[ProjectionErrorRow]:
        with self._read() as db:
            rows = db.all(
                "SELECT position, reason, session FROM {p}projection_errors "
                "ORDER BY position DESC LIMIT ?",
                limit,
            )
        return [ProjectionErrorRow(position=r[0], reason=r[1], session=r[2]) for r in rows]


__all__ = ["ERRORS", "META", "ViewRecorder"]
