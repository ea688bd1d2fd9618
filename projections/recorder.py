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
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import MappingProxyType
from typing import Final, NamedTuple, Self, TypeVar

import msgspec
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
    TrackingRecorder,
)

from threadline.events.ids import new_id
from threadline.events.signing import TrustPolicy
from threadline.events.store import Quarantined, Stored, is_checkpoint_subject, read_record
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
#: a META key per halted view (``halted:<view>`` = the position it halted at); it
#: counts while the view's tracking is below that position
_HALTED: Final = "halted:"
_END: Final = 2**63
TRANSIENT: Final = (OperationalError, InterfaceError)


class Resync(Exception):
    """The database moved under the projector (a rebuild was swapped in, or another
    projector advanced the tracking): re-read the positions and start again from them."""


class Broken(NamedTuple):
    """An event a view could not use. ``view`` is empty for an undecodable record
    (quarantined: no view can ever use it); otherwise it names the view whose code
    raised on the event (that view halts there, or with ``on_error = "skip"`` steps over it)."""

    position: int
    reason: str
    session: str = ""
    view: str = ""


class Passed(NamedTuple):
    """A record of the log that is no session's event (a signed checkpoint): every view
    moves past it, and nothing else happens (it counts as processed)."""

    position: int
    session: str = ""


#: what a batch holds: events, records no view can use, records for no view
Item = Rec | Broken | Passed


class TrackState(NamedTuple):
    generation: str
    positions: dict[str, int]
    #: views halted at a position they have not got past (view -> that position)
    halted: Mapping[str, int] = MappingProxyType({})


class _Batch(NamedTuple):
    """Events to apply to views in one transaction, and the failures already found in
    them (while narrowing down which event and view fail)."""

    items: list[Item]
    state: TrackState
    views: Sequence[View]
    halt: bool
    failures: tuple[Broken, ...] = ()


class BatchOutcome(NamedTuple):
    positions: dict[str, int]
    #: events put aside or halted at, one per (event, view); undecodable ones once
    errors: tuple[Broken, ...]
    #: the views that halted in this batch, at which event
    halted: dict[str, Broken]


class EventFailed(Exception):
    """A view raised; ``position`` and ``view`` are None when it cannot be told which
    (the error surfaced later than the statement that caused it)."""

    def __init__(self, position: int | None, view: str | None, reason: str) -> None:
        super().__init__(reason)
        self.position = position
        self.view = view


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
    def _swap(self, fresh: Self, tables: list[Table], tracked: dict[str, int]) -> None:
        """Put ``fresh``'s ``tables`` in place of these, set the ``tracked`` positions and
        a new generation, in one transaction."""

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
    def _create_tables(db: Db) -> None:
        for table in (*(t for v in VIEWS for t in v.tables), ERRORS, META):
            for statement in table.create(db.dialect):
                db.run(statement)

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
            meta: dict[str, str] = dict(db.all("SELECT key, value FROM {p}projection_meta"))
        halted = {
            view: int(meta[f"{_HALTED}{view}"])
            for view in positions
            if int(meta.get(f"{_HALTED}{view}", 0)) > positions[view]
        }
        return TrackState(str(meta.get("generation", "")), positions, halted)

    def swap_in(self, fresh: ViewRecorder, views: Sequence[str], *, errors: bool) -> None:
        """Replace these views (and their tracking) with ``fresh``'s, atomically."""
        if not isinstance(fresh, type(self)):
            raise TypeError(f"a {type(self).__name__} swaps in a rebuild of its own kind only")
        positions = fresh.state().positions
        tables = [t for v in select_views(views) for t in v.tables] + ([ERRORS] if errors else [])
        self._swap(fresh, tables, {view: positions[view] for view in views})

    @staticmethod
    def _swapped(db: Db, tracking: str, tracked: dict[str, int]) -> None:
        """The end of a swap, in its transaction: the ``tracked`` positions in the live
        ``tracking`` table, and a new generation (a running projector starts again)."""
        db.many(
            f"INSERT INTO {tracking} (application_name, notification_id) VALUES (?, ?) "
            "ON CONFLICT (application_name) DO UPDATE SET notification_id = "
            "excluded.notification_id",
            tracked.items(),
        )
        db.run("UPDATE {p}projection_meta SET value = ? WHERE key = 'generation'", new_id())

    def erase_keys(self, key_ids: Sequence[str], position: int, views: Sequence[str]) -> None:
        """Content keys were erased by the record at ``position``: every view drops
        what they sealed, ``views`` are tracked past the record (so a wait for its
        position ends), and the database's files keep no copy of it (:meth:`_scrub`)."""
        with self._write() as db:
            if key_ids:
                for view in VIEWS:
                    view.erase(db, key_ids)
            for name in views:
                if self._tracked(db, name) < position:  # (a rebuild may be ahead of it)
                    self._track(db, name, position)
        if key_ids:
            self._scrub()

    def _scrub(self) -> None:
        """Leave no old copy of erased data in the database's files."""

    def query(self, fn: Callable[..., T], *args: object) -> T:
        """Run a read function (``fn(db, *args)``) in a read transaction."""
        with self._read() as db:
            return fn(db, *args)

    def apply_batch(
        self,
        raw: Sequence[Stored],
        state: TrackState,
        *,
        views: Sequence[View] = VIEWS,
        halt: bool = True,
        trust: TrustPolicy | None = None,
    ) -> BatchOutcome:
        """Decode and apply a batch in one transaction (see docs/projections.md).

        An undecodable record is quarantined: an error row, and every view moves past
        it. An event a view raises on gets an error row too; that view then halts just
        before it (``halt``: its tracking stays there, a halt record says so, the other
        views carry on) or steps over it (``halt=False``). Given the deployment's ``trust``
        policy, a record without a valid signature from a key allowed to write it is
        quarantined like an undecodable one."""
        items = [decode(stored, trust) for stored in raw]
        return self._apply_items(_Batch(items, state, views, halt))

    def _apply_items(self, batch: _Batch) -> BatchOutcome:
        while True:
            items, views, failures = batch.items, batch.views, batch.failures
            try:
                return self._transaction(batch)
            except (Resync, *TRANSIENT):
                raise
            except EventFailed as exc:
                failed = exc
            except PersistenceError as exc:  # refused at commit (pipelined statements)
                failed = EventFailed(None, None, str(exc))
            one = items[0] if len(items) == 1 else None
            position = failed.position or (one.position if one else None)
            view = failed.view or (views[0].name if len(views) == 1 else None)
            if position is None or view is None:  # narrow down: by event, then by view
                return self._split(batch, by_event=not one)
            if any((f.position, f.view) == (position, view) for f in failures):
                raise failed  # not the view's doing (nothing left to put aside)
            item = next(it for it in items if it.position == position)
            session = item.env.session if isinstance(item, Rec) else item.session
            reason = str(failed)
            if not reason.startswith(f"{view} view: "):  # found by narrowing down
                reason = f"{view} view: {reason}"
            batch = batch._replace(failures=(*failures, Broken(position, reason, session, view)))

    def _split(self, batch: _Batch, *, by_event: bool) -> BatchOutcome:
        """Apply one event (or one view) per transaction, to find which one fails."""
        items, state, views, halt, failures = batch
        parts = [([it], views) for it in items] if by_event else [(items, [v]) for v in views]
        total = BatchOutcome(dict(state.positions), (), {})
        for part, part_views in parts:
            active = [v for v in part_views if v.name not in total.halted]
            if not active:
                continue
            names, at = {v.name for v in active}, {it.position for it in part}
            mine = tuple(f for f in failures if f.view in names and f.position in at)
            out = self._apply_items(
                _Batch(part, state._replace(positions=total.positions), active, halt, mine)
            )
            errors, halted = total.errors + out.errors, total.halted | out.halted
            total = BatchOutcome(out.positions, errors, halted)
        return total

    def _transaction(self, batch: _Batch) -> BatchOutcome:
        items, state, views, halt, failures = batch
        seen = state.positions
        stops = {f.view: f for f in sorted(failures, reverse=True)} if halt else {}
        skipped = set() if halt else {(f.view, f.position) for f in failures}
        ends = {v.name: stops[v.name].position if v.name in stops else _END for v in views}
        covered = {  # what each view moves over: new to it, and before where it halts
            name: [it for it in items if seen[name] < it.position < end]
            for name, end in ends.items()
        }
        quarantined = {
            it.position: it for c in covered.values() for it in c if isinstance(it, Broken)
        }
        errors = (*sorted(quarantined.values()), *failures)
        positions = dict(seen)
        with self._write() as db:
            row = db.one("SELECT value FROM {p}projection_meta WHERE key = 'generation'")
            if (str(row[0]) if row else "") != state.generation:
                raise Resync("the projections database was replaced")
            for view in views:
                if covered[view.name]:
                    positions[view.name] = covered[view.name][-1].position
                    try:
                        self._track(db, view.name, positions[view.name])
                    except IntegrityError:
                        raise Resync(f"{view.name}: tracking moved on elsewhere") from None
            _record(db, errors, stops)
            for view in views:
                recs = [
                    it for it in covered[view.name]
                    if isinstance(it, Rec) and (view.name, it.position) not in skipped
                ]  # fmt: skip
                if recs:
                    apply_view(db, view, recs)
        return BatchOutcome(positions, errors, stops)

    # ------------------------------------------------------------ inspection

    def dump(self, views: Sequence[str] | None = None) -> str:
        """Every row of the views (and the error rows), one JSON line each, in key order:
        the same log gives the same text, whatever the batching or crashes on the way."""
        tables = [t for v in select_views(views) for t in v.tables]
        if views is None:
            tables.append(ERRORS)
        with self._read() as db:
            rows = [(t.name, list(row)) for t in tables for row in db.all(t.select_all())]
        lines = [msgspec.json.encode(row) for row in rows]
        return b"\n".join(lines).decode() + ("\n" if lines else "")

    def errors(self, limit: int = 100) -> list[ProjectionErrorRow]:
        with self._read() as db:
            rows = db.all(
                "SELECT position, reason, session FROM {p}projection_errors "
                "ORDER BY position DESC LIMIT ?",
                limit,
            )
        return [ProjectionErrorRow(position=r[0], reason=r[1], session=r[2]) for r in rows]


def _record(db: Db, errors: Sequence[Broken], stops: dict[str, Broken]) -> None:
    """Write the error rows and the halt records. One row per position: the reasons of
    several views are joined, also across transactions (narrowing down by view)."""
    rows: dict[int, tuple[str, str]] = {}
    if errors:
        low, high = min(b.position for b in errors), max(b.position for b in errors)
        for position, session, reason in db.all(
            "SELECT position, session, reason FROM {p}projection_errors "
            "WHERE position >= ? AND position <= ?",
            low, high,
        ):  # fmt: skip
            rows[position] = (session, reason)
    for b in errors:
        session, reason = rows.get(b.position, (b.session, ""))
        if not b.view or not reason:
            reason = b.reason  # an undecodable record's reason is the whole story
        elif b.reason not in reason:
            reason = f"{reason}; {b.reason}"
        rows[b.position] = (session or b.session, reason)
    db.many(
        "INSERT INTO {p}projection_errors (position, session, reason) VALUES (?, ?, ?) "
        "ON CONFLICT (position) DO UPDATE SET reason = excluded.reason, "
        "session = excluded.session",
        [(position, *rows[position]) for position in sorted({b.position for b in errors})],
    )
    db.many(
        "INSERT INTO {p}projection_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [(f"{_HALTED}{view}", str(b.position)) for view, b in stops.items()],
    )


def decode(stored: Stored, trust: TrustPolicy | None = None) -> Item:
    if is_checkpoint_subject(stored.subject):  # the log's, no session's event
        return Passed(stored.position)
    entry = read_record(stored, trust)
    if isinstance(entry, Quarantined):
        return Broken(entry.position, entry.reason, entry.session)
    return Rec(entry.position, entry.envelope)


def apply_view(db: Db, view: View, recs: list[Rec]) -> None:
    """Apply ``recs`` to ``view``; a view that raises becomes :class:`EventFailed`."""
    known = None if db.deferred_errors else view.name  # pipelined: the cause may be earlier
    try:
        view.before(db, recs)
        for rec in recs:
            try:
                view.apply(db, rec)
            except TRANSIENT:
                raise
            except Exception as exc:
                position = None if db.deferred_errors else rec.position
                raise EventFailed(position, known, f"{view.name} view: {exc}") from exc
        view.after(db, recs)
    except (EventFailed, *TRANSIENT):
        raise
    except Exception as exc:
        raise EventFailed(None, known, f"{view.name} view: {exc}") from exc
