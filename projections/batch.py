"""A batch's parts: decoding stored bytes, the outcome types, applying one view.

Kept apart from :mod:`~threadline.projections.recorder` (the transaction around them).
"""

from __future__ import annotations

from typing import Final, NamedTuple

import msgspec
from eventsourcing.persistence import InterfaceError, OperationalError

from threadline.base.errors import CorruptEvent
from threadline.events import codec
from threadline.projections.sql import Db
from threadline.projections.views import Rec, View

TRANSIENT: Final = (OperationalError, InterfaceError)


class Resync(Exception):
    """The database moved under the projector (a rebuild was swapped in, or another
    projector advanced the tracking): re-read the positions and start again from them."""


class Broken(NamedTuple):
    """An event the projection cannot use: undecodable, unknown kind, or refused by a view."""

    position: int
    reason: str
    session: str = ""


class TrackState(NamedTuple):
    generation: str
    positions: dict[str, int]


class BatchOutcome(NamedTuple):
    positions: dict[str, int]
    errors: tuple[Broken, ...]
    halted: Broken | None
    applied: int


class EventFailed(Exception):
    """Applying an event failed; ``position`` None when it cannot be told which."""

    def __init__(self, position: int | None, reason: str) -> None:
        super().__init__(reason)
        self.position = position
        self.reason = reason


class _SessionHint(msgspec.Struct):
    session: str = ""


_hint = msgspec.json.Decoder(_SessionHint)


def decode(position: int, data: bytes) -> Rec | Broken:
    try:
        return Rec(position, codec.decode(data, position))
    except CorruptEvent as exc:
        try:
            session = _hint.decode(data).session[:64]
        except (msgspec.DecodeError, TypeError):
            session = ""
        return Broken(position, exc.reason, session)


def apply_view(db: Db, view: View, recs: list[Rec]) -> None:
    try:
        view.before(db, recs)
    except TRANSIENT:
        raise
    except Exception as exc:
        raise EventFailed(None, f"{view.name} view: {exc}") from exc
    for rec in recs:
        try:
            view.apply(db, rec)
        except TRANSIENT:
            raise
        except Exception as exc:  # pipelined: the cause may be an earlier event
            position = None if db.deferred_errors else rec.position
            raise EventFailed(position, f"{view.name} view: {exc}") from exc
    try:
        view.after(db, recs)
    except TRANSIENT:
        raise
    except Exception as exc:
        raise EventFailed(None, f"{view.name} view: {exc}") from exc


__all__ = ["BatchOutcome", "Broken", "Resync", "TrackState", "apply_view", "decode"]
