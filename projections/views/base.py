"""What a view is: tables plus a handler per event, applied inside the batch transaction."""

from __future__ import annotations

import abc
import datetime
from collections.abc import Sequence
from typing import ClassVar, NamedTuple

from threadline.events.schema import Envelope
from threadline.projections.sql import Db, Table

TERMINAL_SQL = "('completed', 'failed', 'cancelled')"
OPEN_SQL = "('pending', 'running')"


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


def turn_of(env: Envelope) -> str:
    return env.turn or ""


def attempt_of(env: Envelope) -> int:
    return env.attempt or 0


def attempt_clause(env: Envelope, column: str = "attempt") -> tuple[str, tuple[object, ...]]:
    """Events without an attempt apply to whichever attempt counts (as in the fold)."""
    if env.attempt is None:
        return "", ()
    return f" AND {column} = ?", (env.attempt,)


def day_of(at: int) -> str:
    """The UTC day of a timestamp in microseconds."""
    return datetime.datetime.fromtimestamp(at / 1_000_000, datetime.UTC).strftime("%Y-%m-%d")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
