"""What a view is: tables plus a handler per event, applied inside the batch transaction.

A view that follows turns keeps each turn's :class:`~threadline.events.turns.Phase` in a
row and asks :func:`~threadline.events.turns.transition` what an event does to it: the
turn rules are the session model's, never restated in SQL.
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Sequence
from typing import ClassVar, Final, NamedTuple

from threadline.events.schema import Envelope
from threadline.events.turns import Phase, turn_of
from threadline.projections.sql import Db, Row, Table


class Rec(NamedTuple):
    """One decoded event and its position (the JetStream stream sequence)."""

    position: int
    env: Envelope


class View(abc.ABC):
    """A read model. Handlers are plain SQL through :class:`Db`; they must not keep state
    outside the database, so that a rolled-back batch leaves nothing behind."""

    name: ClassVar[str]
    tables: ClassVar[tuple[Table, ...]]

    def before(self, db: Db, recs: Sequence[Rec]) -> None:  # noqa: B027 - optional hook
        """Called once per batch before its events (only those this view has not seen)."""

    @abc.abstractmethod
    def apply(self, db: Db, rec: Rec) -> None:
        """Apply one event."""

    def after(self, db: Db, recs: Sequence[Rec]) -> None:  # noqa: B027 - optional hook
        """Called once per batch after its events."""

    def erase(self, db: Db, key_ids: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Content keys were erased: drop what the view holds of what they sealed."""


class TurnRows:
    """The rows a view keeps per turn in ``table`` (key ``session, turn``; ``columns``
    start with ``status, attempt``: the turn's :class:`Phase`), for the turns of one
    batch: read in a few queries before the batch's events, then kept current by the
    view as it writes them (:meth:`put`, with what its statements set). It lives in the
    batch's transaction (``db.batch``), so a rolled-back batch leaves nothing behind.

    A hand-written fast path: the views read a turn's phase with a query per event, and
    on PostgreSQL each was a round trip out of the write pipeline (and a chance for the
    query to read another statement's result, see postgres.PgDb). Measured with
    ``python -m bench.against 19af2a4 --only projections --rounds 3`` (100,000 events,
    medians): projecting into PostgreSQL 12.4k events/s at 19af2a4 and 15.1k with this
    (6.7k with a query per event, in an earlier run); its rebuild 8.15 s and 6.69 s."""

    #: turns per query; the number of turns asked is padded up to a power of two so that
    #: a table has a few statement texts (prepared once), and 2 * 256 parameters stay
    #: under SQLite's oldest limit (999)
    CHUNK: Final = 256

    def __init__(self, db: Db, table: str, columns: tuple[str, ...], recs: Sequence[Rec]) -> None:
        self._rows: dict[tuple[str, str], Row] = {}
        keys = sorted({(r.env.session, t) for r in recs if (t := turn_of(r.env)) is not None})
        # a join, not "(session, turn) IN (VALUES ...)": SQLite scans the table for that
        select = (
            f"SELECT t.session, t.turn, {', '.join(f't.{c}' for c in columns)} FROM k "
            f"JOIN {{p}}{table} AS t ON t.session = k.session AND t.turn = k.turn"
        )
        for start in range(0, len(keys), self.CHUNK):
            chunk = keys[start : start + self.CHUNK]
            size = 1 << (len(chunk) - 1).bit_length()
            chunk += chunk[-1:] * (size - len(chunk))
            marks = ", ".join(("(?, ?)",) * size)
            params = [value for key in chunk for value in key]
            for row in db.all(f"WITH k (session, turn) AS (VALUES {marks}) {select}", *params):
                self._rows[row[0], row[1]] = row[2:]

    @classmethod
    def of(cls, db: Db, table: str) -> TurnRows:
        """The rows a view read for this batch (its ``before``)."""
        rows: TurnRows = db.batch[table]
        return rows

    def get(self, session: str, turn: str) -> Row | None:
        """The turn's row (None: the table has no row for it)."""
        return self._rows.get((session, turn))

    def phase(self, session: str, turn: str) -> Phase | None:
        """The turn's phase as the view keeps it; None if it has no row for the turn."""
        row = self._rows.get((session, turn))
        return None if row is None else Phase(row[0], row[1])

    def put(self, session: str, turn: str, row: Row) -> None:
        """What the view's statements just wrote for the turn (``columns``' values)."""
        self._rows[session, turn] = row


def keep_turns(db: Db, table: str, columns: tuple[str, ...], recs: Sequence[Rec]) -> None:
    """Read ``table``'s rows for the turns of ``recs`` into the batch's transaction."""
    db.batch[table] = TurnRows(db, table, columns, recs)


def day_of(at: int) -> str:
    """The UTC day of a timestamp in microseconds."""
    return datetime.datetime.fromtimestamp(at / 1_000_000, datetime.UTC).strftime("%Y-%m-%d")
