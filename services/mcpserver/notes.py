"""Per-owner notes: in memory, or in one JSON file when a data directory is given."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import anyio

MAX_NOTE_CHARS = 4000
MAX_NOTES_PER_OWNER = 1000


class NotesFull(ValueError):
    pass


class NoteStore:
    """Notes keyed by owner; one owner's notes are never returned to another."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = anyio.Path(path) if path is not None else None
        self._notes: dict[str, list[dict[str, str]]] | None = None
        self._lock = anyio.Lock()

    async def add(self, owner: str, text: str) -> int:
        """Store a note; returns how many notes ``owner`` now has."""
        if len(text) > MAX_NOTE_CHARS:
            raise NotesFull(f"a note is limited to {MAX_NOTE_CHARS} characters")
        async with self._lock:
            notes = await self._load()
            mine = notes.setdefault(owner, [])
            if len(mine) >= MAX_NOTES_PER_OWNER:
                raise NotesFull(f"at most {MAX_NOTES_PER_OWNER} notes are kept per owner")
            mine.append({"text": text, "created": datetime.now(UTC).isoformat()})
            await self._save(notes)
            return len(mine)

    async def notes_of(self, owner: str) -> list[dict[str, str]]:
        async with self._lock:
            return list((await self._load()).get(owner, []))

    async def _load(self) -> dict[str, list[dict[str, str]]]:
        if self._notes is None:
            self._notes = {}
            if self._path is not None and await self._path.exists():
                data = json.loads(await self._path.read_text(encoding="utf-8"))
                self._notes = {str(k): list(v) for k, v in data.get("owners", {}).items()}
        return self._notes

    async def _save(self, notes: dict[str, list[dict[str, str]]]) -> None:
        if self._path is None:
            return
        await self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        await temporary.write_text(json.dumps({"owners": notes}, ensure_ascii=False), "utf-8")
        await temporary.replace(self._path)
