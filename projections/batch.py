"""A batch's parts: decoding stored bytes, the outcome types, applying one view.

Kept apart from :mod:`~threadline.projections.recorder` (the transaction around them).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, NamedTuple

from eventsourcing.persistence import InterfaceError, OperationalError

from threadline.events.store import Quarantined, Stored, read_record
from threadline.projections.sql import Db
from threadline.projections.views import Rec, View

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


class TrackState(NamedTuple):
    generation: str
    positions: dict[str, int]
    #: views halted at a position they have not got past (view -> that position)
    halted: Mapping[str, int] = MappingProxyType({})


class BatchOutcome(NamedTuple):
    positions: dict[str, int]
    #: events put aside or halted at, one per (event, view); undecodable ones once
    errors: tuple[Broken, ...]
    #: the views that halted in this batch, at which event
    halted: dict[str, Broken]
    applied: int


class EventFailed(Exception):
    """A view raised; ``position`` and ``view`` are None when it cannot be told which
    (the error surfaced later than the statement that caused it)."""

    def __init__(self, position: int | None, view: str | None, reason: str) -> None:
        super().__init__(reason)
        self.position = position
        self.view = view
        self.reason = reason


def decode(stored: Stored) -> Rec | Broken:
    entry = read_record(stored)
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


__all__ = ["BatchOutcome", "Broken", "EventFailed", "Resync", "TrackState", "apply_view", "decode"]
