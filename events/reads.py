"""Reads over the store port that more than one layer needs."""

from __future__ import annotations

import contextlib

from threadline.base.errors import InvalidField, SessionNotFound
from threadline.events.ids import validate_session_id
from threadline.events.store import EventStore, Recorded


async def records_at(store: EventStore, session: str, version: int) -> list[Recorded]:
    """The session's events up to and including ``version``, which must exist
    (:class:`SessionNotFound`, or :class:`InvalidField` naming ``version``)."""
    validate_session_id(session)
    if version < 1:
        raise InvalidField("version", f"must be 1 or more, not {version}")
    async with contextlib.aclosing(store.read(session, to_version=version)) as read:
        records = [rec async for rec in read]
    if not records:
        raise SessionNotFound(f"session {session!r} has no events")
    if records[-1].version < version:
        raise InvalidField(
            "version",
            f"session {session!r} has {records[-1].version} events; there is no version {version}",
        )
    return records
