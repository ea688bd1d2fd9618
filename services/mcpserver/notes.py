"""Per-owner notes: in memory, or in one JSON file when a data directory is given.

Several MCP server processes may share one file (``threadline up`` runs one agent per
core, each with its own stdio server over the same data directory), so with a file
every read and every change goes to the file itself, under an exclusive ``flock`` on a
lock file beside it, in a worker thread (never on the event loop). Nothing is cached:
a note one process adds is seen by the next call in any other.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

MAX_NOTE_CHARS = 4000
MAX_NOTES_PER_OWNER = 1000

Notes = dict[str, list[dict[str, str]]]
T = TypeVar("T")


class NotesFull(ValueError):
    pass


class NoteStore:
    """Notes keyed by owner; one owner's notes are never returned to another."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._memory: Notes = {}
        self._lock = anyio.Lock()

    async def add(self, owner: str, text: str) -> int:
        """Store a note; returns how many notes ``owner`` now has."""
        if len(text) > MAX_NOTE_CHARS:
            raise NotesFull(f"a note is limited to {MAX_NOTE_CHARS} characters")

        def change(notes: Notes) -> int:
            mine = notes.setdefault(owner, [])
            if len(mine) >= MAX_NOTES_PER_OWNER:
                raise NotesFull(f"at most {MAX_NOTES_PER_OWNER} notes are kept per owner")
            mine.append({"text": text, "created": datetime.now(UTC).isoformat()})
            return len(mine)

        return await self._with_notes(change, write=True)

    async def notes_of(self, owner: str) -> list[dict[str, str]]:
        return await self._with_notes(lambda notes: list(notes.get(owner, [])), write=False)

    async def _with_notes(self, fn: Callable[[Notes], T], *, write: bool) -> T:
        async with self._lock:
            path = self._path
            if path is None:
                return fn(self._memory)
            return await anyio.to_thread.run_sync(_in_file, path, fn, write)


def _in_file(path: Path, fn: Callable[[Notes], T], write: bool) -> T:
    """``fn`` over the file's notes under an exclusive lock; saved again if ``write``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        notes: Notes = {}
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            notes = {str(k): list(v) for k, v in data.get("owners", {}).items()}
        result = fn(notes)
        if write:
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"owners": notes}, ensure_ascii=False), "utf-8")
            temporary.replace(path)
        return result
