"""An owner's sessions without the projections: the :class:`SessionDirectory` port.

One row per session: its owner, when it was created, its id, and bytes the caller
chose (the gateway keeps the session's summary there). Rows are derived from the log's
``session_started`` events by a follower that records how far it got
(:meth:`~SessionDirectory.checkpoint`), so a restarted follower reads only the events
stored since, not the deployment's history; a list reads one owner's rows, not
everyone's. Rows are derived data: written again from the log, they come out the same.

Adapters: :class:`MemoryDirectory` (tests, in-memory stores) and, beside a JetStream
stream, a key-value bucket (:class:`threadline.events.kv.KVDirectory`).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class Row(NamedTuple):
    """Where a session sits in its owner's list (oldest first when sorted)."""

    created_at: int
    session: str


class SessionDirectory(Protocol):
    async def put(self, owner: str, row: Row, data: bytes) -> None:
        """Keep ``data`` for ``row`` of ``owner`` (again: replaced, same bytes)."""

    async def rows(self, owner: str) -> list[Row]:
        """The owner's rows, in no particular order."""

    async def get(self, owner: str, row: Row) -> bytes | None: ...

    async def checkpoint(self) -> int:
        """The log position the rows reflect (0: none yet)."""

    async def save_checkpoint(self, position: int) -> None: ...


class MemoryDirectory:
    """Rows in dicts; one per process (a new process starts from position 0)."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[Row, bytes]] = {}
        self._checkpoint = 0

    async def put(self, owner: str, row: Row, data: bytes) -> None:
        self._rows.setdefault(owner, {})[row] = data

    async def rows(self, owner: str) -> list[Row]:
        return list(self._rows.get(owner, ()))

    async def get(self, owner: str, row: Row) -> bytes | None:
        return self._rows.get(owner, {}).get(row)

    async def checkpoint(self) -> int:
        return self._checkpoint

    async def save_checkpoint(self, position: int) -> None:
        self._checkpoint = max(self._checkpoint, position)
