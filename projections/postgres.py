"""The views in PostgreSQL: ``eventsourcing``'s ``PostgresTrackingRecorder`` with the view
tables beside its tracking table, all in one schema (``threadline`` by default).

Every write transaction takes a shared advisory lock on the schema; a rebuild's swap
takes it exclusively, moves the rebuilt tables in (``ALTER TABLE ... SET SCHEMA``) and
bumps the generation, so a running projector notices and starts again from the
swapped-in tracking. Reads run at ``REPEATABLE READ`` (one snapshot per call).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

from threadline.base.errors import ConfigurationError
from threadline.base.redact import without_credentials
from threadline.projections.recorder import ViewRecorder
from threadline.projections.sql import Db, Dialect, Row, Table, translated, translation

_LOCK = "SELECT {fn}(hashtext('threadline-projections'), hashtext(?))"
TRACKING_TABLE = "tracking"


class PgDb(Db):
    """A cursor, optionally in pipeline mode (``pipelined``): ``run`` then sends without
    waiting for the server; queries wait (and so surface any error queued before them).

    A query runs on a cursor of its own: psycopg puts each result on the cursor of its
    statement as it comes back, so on the shared cursor the results of statements sent
    before a query could arrive while it was sent and be read as its rows
    (tests/projections/test_write_queries.py)."""

    def __init__(self, cursor: psycopg.Cursor[Any], dialect: Dialect, pipelined: bool) -> None:
        super().__init__(cursor, dialect, psycopg)
        self.deferred_errors = pipelined

    def all(self, sql: str, *params: object) -> list[Row]:
        # tuple rows: the library's own statements use dict rows
        with self.raw.connection.cursor(row_factory=tuple_row) as cursor:
            try:
                cursor.execute(self.dialect.sql(sql), params)
                rows: list[Row] = cursor.fetchall()
                return rows
            except psycopg.Error as exc:
                raise translation(psycopg, exc) from exc


def connection_params(url: str) -> dict[str, Any]:
    """``postgresql://user:password@host:port/dbname`` as keyword arguments."""
    if not url.startswith(("postgres://", "postgresql://")):
        raise ConfigurationError("THREADLINE_DATABASE_URL must start with postgresql://")
    given = conninfo_to_dict(url)  # other parameters (``?sslmode=...``) are not used
    user = given.get("user", "postgres")
    return {
        "dbname": given.get("dbname") or user,
        "host": given.get("host", "localhost"),
        "port": given.get("port", 5432),
        "user": user,
        "password": given.get("password", ""),
    }


class PostgresViewRecorder(PostgresTrackingRecorder, ViewRecorder):
    """Views in one PostgreSQL schema."""

    def __init__(self, url: str, *, schema: str = "threadline") -> None:
        self.url = url
        self.schema = schema
        datastore = PostgresDatastore(
            **connection_params(url),
            schema=schema,
            pool_size=2,
            max_overflow=8,
            originator_id_type="text",
        )
        super().__init__(datastore, tracking_table_name=TRACKING_TABLE)
        self.dialect = Dialect("postgres", schema)

    @property
    def location(self) -> str:
        return f"{without_credentials(self.url)} schema {self.schema}"

    def _create(self) -> None:
        # Serialise set-up against other processes creating the same schema.
        with self.datastore.get_connection() as conn, translated(psycopg):
            conn.execute(self.dialect.sql(_LOCK.format(fn="pg_advisory_lock")), (self.schema,))
            try:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                self.create_table()
                with self.datastore.transaction(commit=True) as cursor:
                    self._create_tables(PgDb(cursor, self.dialect, False))
            finally:
                conn.execute(
                    self.dialect.sql(_LOCK.format(fn="pg_advisory_unlock")), (self.schema,)
                )

    @contextlib.contextmanager
    def _write(self) -> Iterator[Db]:
        with (
            self.datastore.transaction(commit=True) as cursor,
            translated(psycopg),
            cursor.connection.pipeline(),
        ):
            db = PgDb(cursor, self.dialect, True)
            db.run(_LOCK.format(fn="pg_advisory_xact_lock_shared"), self.schema)
            yield db

    @contextlib.contextmanager
    def _read(self) -> Iterator[Db]:
        with self.datastore.transaction(commit=False) as cursor:
            db = PgDb(cursor, self.dialect, False)
            db.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield db

    def _track(self, db: Db, view: str, position: int) -> None:
        with translated(psycopg):
            self._insert_tracking(db.raw, Tracking(view, position))

    def _tracked(self, db: Db, view: str) -> int:
        # a query: on a cursor of its own (PgDb)
        with db.raw.connection.cursor() as cursor, translated(psycopg):
            return self._max_tracking_id(view, cursor) or 0

    def _swap(
        self, fresh: PostgresViewRecorder, tables: list[Table], tracked: dict[str, int]
    ) -> None:
        live, new = f'"{self.schema}"', f'"{fresh.schema}"'
        with self.datastore.transaction(commit=True) as cursor:
            db = PgDb(cursor, self.dialect, False)
            db.run(_LOCK.format(fn="pg_advisory_xact_lock"), self.schema)
            for table in tables:
                db.run(f"DROP TABLE IF EXISTS {live}.{table.name}")
                db.run(f"ALTER TABLE {new}.{table.name} SET SCHEMA {live}")
            self._swapped(db, f"{live}.{TRACKING_TABLE}", tracked)

    def close(self) -> None:
        self.datastore.close()

    def drop(self) -> None:
        with self.datastore.transaction(commit=True) as cursor, translated(psycopg):
            cursor.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self.close()
