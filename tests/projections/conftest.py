"""Projection fixtures: one view store per test, on SQLite and on a real PostgreSQL.

PostgreSQL is the server at ``THREADLINE_TEST_DATABASE_URL`` (default: the local one,
trust auth, database ``test``); every test gets its own schema, dropped afterwards.
The PostgreSQL variants are skipped only when no server answers there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from threadline.projections.config import ProjectorConfig

PG_URL = os.environ.get("THREADLINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
_answers: dict[str, bool] = {}

ConfigFactory = Callable[..., ProjectorConfig]


def pg_available() -> bool:
    if PG_URL not in _answers:
        try:
            with psycopg.connect(PG_URL, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _answers[PG_URL] = True
        except psycopg.OperationalError:
            _answers[PG_URL] = False
    return _answers[PG_URL]


def drop_schemas(prefix: str) -> None:
    """Drop the schema and any rebuild scratch schema left beside it."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)
        ).fetchall()
        for (name,) in rows:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def make_config(backend: str, tmp_path: Path, **overrides: Any) -> ProjectorConfig:
    """A config for a view store no other test uses."""
    tag = uuid.uuid4().hex[:10]
    if backend == "postgres":
        if not pg_available():
            if os.environ.get("CI"):  # CI starts PostgreSQL (.ci/run): never skip there
                pytest.fail(f"no PostgreSQL answers at {PG_URL}")
            pytest.skip(f"no PostgreSQL answers at {PG_URL}")
        return ProjectorConfig(
            sqlite_path="", database_url=PG_URL, schema=f"tlt_{tag}", **overrides
        )
    return ProjectorConfig(sqlite_path=str(tmp_path / f"views-{tag}.sqlite3"), **overrides)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_config(backend: str, tmp_path: Path) -> Iterator[ConfigFactory]:
    """Make view-store configs on this test's backend; PostgreSQL schemas are dropped after."""
    made: list[ProjectorConfig] = []

    def make(**overrides: Any) -> ProjectorConfig:
        config = make_config(backend, tmp_path, **overrides)
        made.append(config)
        return config

    yield make
    for config in made:
        if config.database_url:
            drop_schemas(config.schema)


@pytest.fixture
def config(new_config: ConfigFactory) -> ProjectorConfig:
    return new_config()
