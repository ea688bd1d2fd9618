"""The views in SQLite (the default): ``eventsourcing``'s ``SQLiteTrackingRecorder`` with
the view tables beside its ``tracking`` table, in one WAL-mode file.

Writes use ``BEGIN IMMEDIATE`` so that a batch and a rebuild's swap never interleave;
the swap copies the rebuilt tables in from the scratch file (``ATTACH``) in one
transaction, which is safe while other connections have the file open.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteTrackingRecorder

from threadline.projections.recorder import ViewRecorder
from threadline.projections.sql import Db, Dialect, Table, translated

LOCK_TIMEOUT_S = 30


class SQLiteViewRecorder(SQLiteTrackingRecorder, ViewRecorder):
    """Views in one SQLite file (``<data dir>/projections.sqlite3`` by default)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        datastore = SQLiteDatastore(
            str(self.path), lock_timeout=LOCK_TIMEOUT_S, originator_id_type="text"
        )
        super().__init__(datastore)
        self.dialect = Dialect("sqlite")

    @property
    def location(self) -> str:
        return str(self.path)

    def _create(self) -> None:
        self.create_table()  # the library's tracking table (and its migrations)
        with self._write() as db:
            self._create_tables(db)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Db]:
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            try:
                with translated(sqlite3):
                    # WAL + NORMAL: a commit is atomic and survives a crash of the process;
                    # an OS crash may lose the newest batches, views and tracking together.
                    cursor.execute("PRAGMA synchronous = NORMAL")
                    # what is deleted or overwritten is zeroed (erased titles: _scrub)
                    cursor.execute("PRAGMA secure_delete = ON")
                    cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield Db(cursor.sqlite_cursor, self.dialect, sqlite3)
                except BaseException:
                    conn.rollback()
                    raise
                with translated(sqlite3):
                    conn.commit()
            finally:
                cursor.sqlite_cursor.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Db]:
        with self.datastore.transaction(commit=False) as cursor:
            yield Db(cursor.sqlite_cursor, self.dialect, sqlite3)

    def _track(self, db: Db, view: str, position: int) -> None:
        with translated(sqlite3):
            self._insert_tracking(SQLiteCursor(db.raw), Tracking(view, position))

    def _tracked(self, db: Db, view: str) -> int:
        with translated(sqlite3):
            return self._max_tracking_id(view, SQLiteCursor(db.raw)) or 0

    def _swap(
        self, fresh: SQLiteViewRecorder, tables: list[Table], tracked: dict[str, int]
    ) -> None:
        connection = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        with contextlib.closing(connection) as conn, translated(sqlite3):
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("ATTACH DATABASE ? AS fresh", (str(fresh.path),))
            conn.execute("BEGIN IMMEDIATE")
            with conn:  # commits, or rolls back on an error
                for table in tables:
                    conn.execute(f"DELETE FROM main.{table.name}")
                    conn.execute(f"INSERT INTO main.{table.name} SELECT * FROM fresh.{table.name}")
                self._swapped(Db(conn, self.dialect, sqlite3), "main.tracking", tracked)
            conn.execute("DETACH DATABASE fresh")

    def _scrub(self) -> None:
        """Write the WAL back and truncate it: erased data zeroed in the file
        (``secure_delete``) and no old page left in the log."""
        connection = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        with contextlib.closing(connection) as conn, translated(sqlite3):
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.datastore.close()

    def drop(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
