"""A query inside a PostgreSQL write transaction answers with its own rows.

Write transactions are pipelined: statements are sent without waiting, and their
results come back later, when the server flushes them (its send buffer full, or a
flush asked for). The queries and those statements shared one cursor, and psycopg
puts a statement's result on its cursor as it comes: results arriving while a query
was sent became the cursor's, and the query read them ("the last operation didn't
produce records (command status: INSERT 0 1)"). The projector took that for a view's
failure and applied the batch again one event per transaction (in the projection
benchmark, 1,000 transactions instead of one, at about one batch a run at 19af2a4's
query count and at every batch once the views read their turns once a batch); the
tracking read of an erasure failed the same way.
"""

from __future__ import annotations

import select
from pathlib import Path

import psycopg

from tests.projections.conftest import drop_schemas, make_config
from threadline.projections.postgres import PostgresViewRecorder

ROWS = 500


def _results_arrive(db_raw: psycopg.Cursor[object]) -> None:
    """Have the server send what it holds of the results so far, and wait until they
    are here (unread): what a full send buffer does at a moment nobody chooses."""
    pgconn = db_raw.connection.pgconn
    pgconn.send_flush_request()
    while pgconn.flush():  # 1: more to send
        pass
    readable, _, _ = select.select([pgconn.socket], [], [], 10)
    assert readable, "the server sent no results"


def test_a_query_reads_its_own_rows_whatever_results_arrived_before(tmp_path: Path) -> None:
    config = make_config("postgres", tmp_path)
    recorder = config.open()
    assert isinstance(recorder, PostgresViewRecorder)
    try:
        with recorder._write() as db:
            db.many(
                "INSERT INTO {p}projection_meta (key, value) VALUES (?, ?)",
                [(f"k{i}", "v") for i in range(ROWS)],
            )
            _results_arrive(db.raw)
            assert db.all("SELECT count(*) FROM {p}projection_meta WHERE value = 'v'") == [(ROWS,)]
            db.run("INSERT INTO {p}projection_meta (key, value) VALUES ('one', 'v')")
            _results_arrive(db.raw)
            assert recorder._tracked(db, "sessions") == 0
    finally:
        recorder.drop()
        drop_schemas(config.schema)
