"""Read queries over the views: ``fn(db, ...)``, run by :meth:`ViewRecorder.query`."""

from __future__ import annotations

from threadline.base.errors import InvalidInput
from threadline.projections.model import SessionPage, SessionSummary, UsageReport, UsageRow
from threadline.projections.sql import Db, Row

MAX_PAGE = 500

_SUMMARY_COLUMNS = (
    "session, owner, title, provider, model, created_at, updated_at, message_count, "
    "turn_count, last_turn, last_status, version, position, forked_from, forked_version"
)


def _summary(row: Row) -> SessionSummary:
    names = [c.strip() for c in _SUMMARY_COLUMNS.split(",")]
    return SessionSummary(**dict(zip(names, row, strict=True)))


_MAX_AT = 2**63 - 1  # cursors hold a microsecond timestamp (a signed 64-bit column)


def _cursor(value: str) -> tuple[int, str]:
    at, _, session = value.partition(".")
    try:
        moment = int(at)
    except ValueError:
        moment = -1
    if not 0 <= moment <= _MAX_AT:
        raise InvalidInput("invalid cursor: pass back the next_cursor of a page")
    return moment, session


def list_sessions(db: Db, owner: str, limit: int, cursor: str | None) -> SessionPage:
    """An owner's sessions, newest first (by creation), ``limit`` per page."""
    limit = max(1, min(limit, MAX_PAGE))
    where, args = "owner = ?", list[object]([owner])
    if cursor:
        at, session = _cursor(cursor)
        where += " AND (created_at < ? OR (created_at = ? AND session < ?))"
        args += [at, at, session]
    rows = db.all(
        f"SELECT {_SUMMARY_COLUMNS} FROM {{p}}sessions WHERE {where} "
        "ORDER BY created_at DESC, session DESC LIMIT ?",
        *args,
        limit + 1,
    )
    page = [_summary(r) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = f"{page[-1].created_at}.{page[-1].session}" if more and page else None
    return SessionPage(sessions=page, next_cursor=next_cursor)


def usage(db: Db, owner: str, day: str | None) -> UsageReport:
    """An owner's usage per day, provider and model (one day, or every day)."""
    where, args = "owner = ?", list[object]([owner])
    if day is not None:
        where += " AND day = ?"
        args.append(day)
    rows = db.all(
        "SELECT day, provider, model, COUNT(*), CAST(SUM(input_tokens) AS BIGINT), "
        "CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(reasoning_tokens) AS BIGINT), "
        "CAST(SUM(cached_input_tokens) AS BIGINT), SUM(duration_ms), AVG(ttft_ms) "
        f"FROM {{p}}usage WHERE {where} GROUP BY day, provider, model "
        "ORDER BY day, provider, model",
        *args,
    )
    # the columns in UsageRow's field order
    out = [UsageRow(**dict(zip(UsageRow.__struct_fields__, r, strict=True))) for r in rows]
    return UsageReport(
        owner=owner,
        day=day,
        rows=out,
        turns=sum(r.turns for r in out),
        input_tokens=sum(r.input_tokens for r in out),
        output_tokens=sum(r.output_tokens for r in out),
    )


__all__ = ["list_sessions", "usage"]
