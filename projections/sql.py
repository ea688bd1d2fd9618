"""One SQL text for SQLite and PostgreSQL: table specs, placeholders, a cursor wrapper.

Views write SQL once, with ``?`` placeholders and ``{p}`` before every table name.
A :class:`Dialect` turns that into the database's form (``%s`` and a schema-qualified
name for PostgreSQL) and caches the result. Column types are ``text``, ``int`` and
``real`` (``int`` is 64-bit on both); a trailing ``?`` makes a column nullable.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from eventsourcing.persistence import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
)

Row = tuple[Any, ...]

_TYPES = {
    "sqlite": {"text": "TEXT", "int": "INTEGER", "real": "REAL"},
    "postgres": {"text": "TEXT", "int": "BIGINT", "real": "DOUBLE PRECISION"},
}
_DEFAULTS = {"text": "''", "int": "0", "real": "0"}


@dataclass(frozen=True)
class Dialect:
    """How SQL is spelled for one database (and, for PostgreSQL, one schema)."""

    name: Literal["sqlite", "postgres"]
    schema: str = ""

    @property
    def prefix(self) -> str:
        return f'"{self.schema}".' if self.name == "postgres" else ""

    def sql(self, text: str) -> str:
        return _spelled(text, self.prefix, self.name == "postgres")

    def column_type(self, spec: str) -> str:
        nullable = spec.endswith("?")
        base = spec.rstrip("?")
        sql_type = _TYPES[self.name][base]
        return sql_type if nullable else f"{sql_type} NOT NULL DEFAULT {_DEFAULTS[base]}"


@dataclass(frozen=True)
class Table:
    """A view table: ordered columns, primary key, secondary indexes."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    def create(self, dialect: Dialect) -> list[str]:
        cols = ", ".join(f"{name} {dialect.column_type(spec)}" for name, spec in self.columns)
        statements = [
            f"CREATE TABLE IF NOT EXISTS {dialect.prefix}{self.name} "
            f"({cols}, PRIMARY KEY ({', '.join(self.key)}))"
        ]
        for i, index in enumerate(self.indexes):
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {self.name}_ix{i} "
                f"ON {dialect.prefix}{self.name} ({', '.join(index)})"
            )
        return statements

    def select_all(self) -> str:
        return (
            f"SELECT {', '.join(name for name, _ in self.columns)} FROM {{p}}{self.name} "
            f"ORDER BY {', '.join(self.key)}"
        )


@functools.lru_cache(maxsize=4096)
def _spelled(text: str, prefix: str, percent: bool) -> str:
    """``{p}`` as ``prefix``, and ``?`` as ``%s`` if ``percent`` (cached: views run the
    same statements over and over)."""
    text = text.replace("{p}", prefix)
    return text.replace("?", "%s") if percent else text


def translation(driver: Any, exc: Exception) -> PersistenceError:
    """A DB-API driver's (``sqlite3``, ``psycopg``) error as ``eventsourcing``'s."""
    if isinstance(exc, driver.IntegrityError):
        return IntegrityError(str(exc))
    if isinstance(exc, driver.OperationalError):  # "database is locked", a lost connection...
        return OperationalError(str(exc))
    if isinstance(exc, driver.InterfaceError):
        return InterfaceError(str(exc))
    return DatabaseError(str(exc))


@contextlib.contextmanager
def translated(driver: Any) -> Iterator[None]:
    """A DB-API driver's errors as ``eventsourcing``'s (:func:`translation`)."""
    try:
        yield
    except driver.Error as exc:
        raise translation(driver, exc) from exc


class Db:
    """A cursor inside one transaction; database errors come out as the
    ``eventsourcing.persistence`` exceptions (``OperationalError`` is transient).
    ``raw`` is the library cursor (for the tracking recorder's own statements).

    The statement methods catch the driver's errors themselves rather than through
    :func:`translated`: a context manager per statement was a tenth of the SQLite
    projector's time (cProfile of bench/projections.py, 20,000 events)."""

    #: errors may surface at a later statement than the one that caused them (pipelining)
    deferred_errors: bool = False

    def __init__(self, raw: Any, dialect: Dialect, driver: Any) -> None:
        self.raw, self.dialect, self.driver = raw, dialect, driver
        #: what views keep while they apply a batch in this transaction, by table
        #: (:class:`~threadline.projections.views.base.TurnRows`); gone with it
        self.batch: dict[str, Any] = {}

    def run(self, sql: str, *params: object) -> None:
        """Execute a statement whose outcome is not needed now (it may be pipelined)."""
        try:
            self.raw.execute(self.dialect.sql(sql), params)
        except self.driver.Error as exc:
            raise translation(self.driver, exc) from exc

    def many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Execute a statement once per parameter row."""
        rows = list(rows)
        if rows:
            try:
                self.raw.executemany(self.dialect.sql(sql), rows)
            except self.driver.Error as exc:
                raise translation(self.driver, exc) from exc

    def all(self, sql: str, *params: object) -> list[Row]:
        """Execute a query; return every row as a tuple."""
        try:
            self.raw.execute(self.dialect.sql(sql), params)
            return [tuple(row) for row in self.raw.fetchall()]
        except self.driver.Error as exc:
            raise translation(self.driver, exc) from exc

    def one(self, sql: str, *params: object) -> Row | None:
        rows = self.all(sql, *params)
        return rows[0] if rows else None
