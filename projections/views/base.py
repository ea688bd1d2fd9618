"""What a view is: tables plus a handler per event, applied inside the batch transaction.

A view that follows turns keeps each turn's :class:`~threadline.events.turns.Phase` in a
row and asks :func:`~threadline.events.turns.transition` what an event does to it: the
turn rules are the session model's, never restated in SQL.
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Sequence
from typing import ClassVar, NamedTuple

from threadline.events.schema import Envelope
from threadline.events.turns import Phase
from threadline.projections.sql import Db, Table


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


def phase_of(db: Db, table: str, session: str, turn: str) -> Phase | None:
    """A turn's phase as a view keeps it (``status`` and ``attempt`` columns of ``table``);
    None if the view has no row for the turn."""
    row = db.one(
        f"SELECT status, attempt FROM {{p}}{table} WHERE session = ? AND turn = ?", session, turn
    )
    return None if row is None else Phase(row[0], row[1])


def day_of(at: int) -> str:
    """The UTC day of a timestamp in microseconds."""
    return datetime.datetime.fromtimestamp(at / 1_000_000, datetime.UTC).strftime("%Y-%m-%d")
