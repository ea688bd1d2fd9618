"""Where the views live and how the projector behaves.

SQLite at ``<data dir>/projections.sqlite3`` unless ``Settings.database_url``
(``THREADLINE_DATABASE_URL``) names a PostgreSQL database. Projection settings come
from the environment (``THREADLINE_PROJECTIONS_ON_ERROR``, ``..._SCHEMA``,
``..._BATCH_SIZE``), then from explicit overrides (command-line options).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
from eventsourcing.persistence import PersistenceError

from threadline.base.config import Settings, convert, env_values
from threadline.base.errors import ConfigurationError, StoreUnavailable
from threadline.projections.recorder import ViewRecorder

OnError = Literal["halt", "skip"]
SQLITE_FILE: Final = "projections.sqlite3"
_SCHEMA_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
#: the settings read from ``THREADLINE_PROJECTIONS_<NAME>``
_FROM_ENV: Final = ("on_error", "schema", "batch_size")


class ProjectorConfig(msgspec.Struct, frozen=True, kw_only=True):
    #: the SQLite file (used when ``database_url`` is not set)
    sqlite_path: str
    #: ``postgresql://user[:password]@host[:port]/dbname``
    database_url: str | None = None
    #: the PostgreSQL schema holding the views and their tracking table
    schema: str = "threadline"
    #: a view that raises on an event halts there, or skips it for that view (an
    #: undecodable record is always quarantined: every view moves past it)
    on_error: OnError = "halt"
    #: at most this many events per transaction
    batch_size: int = 1000

    def __post_init__(self) -> None:
        if not _SCHEMA_RE.fullmatch(self.schema):
            raise ConfigurationError(
                f"projection schema {self.schema!r}: use 1-40 letters, digits or '_'"
            )
        if self.batch_size < 1:
            raise ConfigurationError("projection batch size must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ProjectorConfig:
        merged: dict[str, Any] = {
            "sqlite_path": str(settings.data_path / SQLITE_FILE),
            "database_url": settings.database_url or None,
        }
        merged.update(env_values(cls, "THREADLINE_PROJECTIONS_", os.environ, _FROM_ENV))
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return convert(merged, cls, "projection setting")

    def open(self) -> ViewRecorder:
        """The live view store, created if missing (synchronous: call it in a thread)."""
        return self._recorder(self.sqlite_path, self.schema)

    def scratch(self) -> ViewRecorder:
        """A new, empty view store beside the live one, for a rebuild."""
        tag = uuid.uuid4().hex[:8]
        return self._recorder(f"{self.sqlite_path}.rebuild-{tag}", f"{self.schema}_rb_{tag}")

    def _recorder(self, path: str, schema: str) -> ViewRecorder:
        recorder: ViewRecorder
        if self.database_url:
            from threadline.projections.postgres import PostgresViewRecorder

            recorder = PostgresViewRecorder(self.database_url, schema=schema)
        else:
            from threadline.projections.sqlite import SQLiteViewRecorder

            recorder = SQLiteViewRecorder(Path(path))
        try:
            recorder.setup()
        except PersistenceError as exc:
            recorder.close()
            raise StoreUnavailable(f"projections database {recorder.location}: {exc}") from None
        except BaseException:
            recorder.close()
            raise
        return recorder
