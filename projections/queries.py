"""Read queries over the views: ``fn(db, ...)``, run by :meth:`ViewRecorder.query`."""

from __future__ import annotations

from typing import Any

import msgspec

from threadline.base.errors import InvalidInput
from threadline.events.schema import Usage
from threadline.projections.model import (
    FallbackView,
    MessageView,
    SessionDetail,
    SessionPage,
    SessionSummary,
    ToolCallView,
    TurnView,
    UsageReport,
    UsageRow,
)
from threadline.projections.sql import Db, Row
from threadline.projections.views.history import FALLBACKS, MESSAGES, TOOL_CALLS, TURNS

MAX_PAGE = 500

_SUMMARY_COLUMNS = (
    "session, owner, title, provider, model, created_at, updated_at, message_count, "
    "turn_count, last_turn, last_status, version, position, forked_from, forked_version"
)
_args = msgspec.json.Decoder(dict[str, Any])


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


def _rows(db: Db, table_columns: tuple[str, ...], table: str, session: str) -> list[dict[str, Any]]:
    order = "ordinal, turn" if table == "turns" else "version"
    rows = db.all(
        f"SELECT {', '.join(table_columns)} FROM {{p}}{table} WHERE session = ? ORDER BY {order}",
        session,
    )
    return [dict(zip(table_columns, row, strict=True)) for row in rows]


def get_session(db: Db, session: str) -> SessionDetail | None:
    """A session's summary and full history (tool calls and fallbacks under their turn)."""
    row = db.one(f"SELECT {_SUMMARY_COLUMNS} FROM {{p}}sessions WHERE session = ?", session)
    if row is None:
        return None
    messages = []
    for m in _rows(db, MESSAGES.column_names, "messages", session):
        m.pop("session")
        m["superseded"] = bool(m["superseded"])
        messages.append(MessageView(**m))
    calls: dict[str, list[ToolCallView]] = {}
    for c in _rows(db, TOOL_CALLS.column_names, "tool_calls", session):
        c.pop("session")
        c["arguments"] = _args.decode(c["arguments"]) if c["arguments"] else {}
        c["is_error"], c["superseded"] = bool(c["is_error"]), bool(c["superseded"])
        calls.setdefault(c["turn"], []).append(ToolCallView(**c))
    fallbacks: dict[str, list[FallbackView]] = {}
    for f in _rows(db, FALLBACKS.column_names, "fallbacks", session):
        view = FallbackView(
            version=f["version"], turn=f["turn"], attempt=f["attempt"], kind=f["kind"],
            reason=f["reason"], from_=f["from_"], to=f["to_"], at=f["at"],
            superseded=bool(f["superseded"]),
        )  # fmt: skip
        fallbacks.setdefault(f["turn"], []).append(view)
    turns = []
    for t in _rows(db, TURNS.column_names, "turns", session):
        for key in ("session", "ordinal"):
            t.pop(key)
        for key in ("retryable", "cancel_requested"):
            t[key] = bool(t[key])
        turn_id = t["turn"]
        turns.append(
            TurnView(**t, tool_calls=calls.pop(turn_id, []), fallbacks=fallbacks.pop(turn_id, []))
        )
    return SessionDetail(summary=_summary(row), messages=messages, turns=turns)


def turn_usage(db: Db, session: str) -> dict[str, Usage]:
    """Tokens of each of a session's completed turns (from the usage view): those its
    ``turn_completed`` reported, or, when it reported none, the sum of its steps."""
    rows = db.all(
        "SELECT turn, input_tokens, output_tokens, reasoning_tokens, cached_input_tokens "
        "FROM {p}usage WHERE session = ? AND status = 'completed'",
        session,
    )
    return {
        r[0]: Usage(
            input_tokens=int(r[1]),
            output_tokens=int(r[2]),
            reasoning_tokens=int(r[3]),
            cached_input_tokens=int(r[4]),
        )
        for r in rows
    }


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
    out = [
        UsageRow(
            day=r[0],
            provider=r[1],
            model=r[2],
            turns=int(r[3]),
            input_tokens=int(r[4]),
            output_tokens=int(r[5]),
            reasoning_tokens=int(r[6]),
            cached_input_tokens=int(r[7]),
            duration_ms=float(r[8]),
            ttft_ms_avg=None if r[9] is None else float(r[9]),
        )  # fmt: skip
        for r in rows
    ]
    return UsageReport(
        owner=owner,
        day=day,
        rows=out,
        turns=sum(r.turns for r in out),
        input_tokens=sum(r.input_tokens for r in out),
        output_tokens=sum(r.output_tokens for r in out),
    )


__all__ = ["get_session", "list_sessions", "turn_usage", "usage"]
