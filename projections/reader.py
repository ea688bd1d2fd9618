"""The gateway's read API over the views. Async; every database call runs in a thread,
through :meth:`ViewRecorder.query` (the queries below: ``fn(db, ...)``)."""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from eventsourcing.persistence import WaitInterruptedError

from threadline.base.aio import in_thread
from threadline.base.config import Settings
from threadline.base.errors import InvalidInput
from threadline.projections.config import ProjectorConfig
from threadline.projections.model import (
    VIEW_NAMES,
    ProjectionErrorRow,
    SessionPage,
    SessionSummary,
    UsageReport,
    UsageRow,
)
from threadline.projections.recorder import ViewRecorder
from threadline.projections.sql import Db, Row

S = TypeVar("S", SessionSummary, UsageRow)

#: ``wait(view, position, timeout)`` of a projector running in this process
Waiter = Callable[[str | None, int, float], Awaitable[bool]]
MAX_PAGE = 500
#: the sessions table's columns in SessionSummary's field order
_SUMMARY_COLUMNS = ", ".join(SessionSummary.__struct_fields__)
_MAX_AT = 2**63 - 1  # cursors hold a microsecond timestamp (a signed 64-bit column)


class ProjectionReader:
    """Reads the sessions and usage views.

    With ``wait`` (that of the projector running in this process) read-your-writes
    waits are woken by it as it commits; without, ``wait`` uses the tracking recorder's
    own ``wait`` in a thread (for a gateway running apart from the projector).
    """

    def __init__(self, recorder: ViewRecorder, *, wait: Waiter | None = None) -> None:
        self.recorder = recorder
        self._wait = wait

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[ProjectionReader]:
        """A reader over the configured views, for a process without a projector."""
        recorder = await in_thread(ProjectorConfig.from_settings(settings).open)
        try:
            yield cls(recorder)
        finally:
            await in_thread(recorder.close)

    async def list_sessions(
        self, owner: str, limit: int = 50, cursor: str | None = None
    ) -> SessionPage:
        """``owner``'s sessions, newest first; pass ``next_cursor`` back for the next page."""
        return await in_thread(self.recorder.query, _list_sessions, owner, limit, cursor)

    async def usage(self, owner: str, day: str | None = None) -> UsageReport:
        """Tokens, latency and turns per day, provider and model (one UTC day, or all)."""
        if day is not None:
            try:
                day = datetime.date.fromisoformat(day).isoformat()
            except ValueError:
                raise InvalidInput(f"day must be YYYY-MM-DD, not {day[:40]!r}") from None
        return await in_thread(self.recorder.query, _usage, owner, day)

    async def errors(self, limit: int = 100) -> list[ProjectionErrorRow]:
        """The newest projection errors (events the views could not use)."""
        return await in_thread(self.recorder.errors, limit)

    async def wait(self, view: str | None, position: int, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Until ``view`` (every view for ``None``) has processed stream position
        ``position`` (read-your-writes). True when it has, False after ``timeout``."""
        if view is not None and view not in VIEW_NAMES:
            raise InvalidInput(f"unknown view {view!r}; views are {', '.join(VIEW_NAMES)}")
        if self._wait is not None:
            return await self._wait(view, position, timeout)
        # the library's tracking ``wait`` (it polls with backoff), interrupted on cancel
        interrupt = threading.Event()
        deadline = time.monotonic() + timeout

        def wait_all() -> bool:
            for name in VIEW_NAMES if view is None else (view,):
                try:
                    self.recorder.wait(
                        name, position, timeout=max(0.0, deadline - time.monotonic()),
                        interrupt=interrupt,
                    )  # fmt: skip
                except (TimeoutError, WaitInterruptedError):
                    return False
            return True

        return await in_thread(wait_all, interrupt=interrupt)


def _struct(cls: type[S], row: Row) -> S:
    return cls(**dict(zip(cls.__struct_fields__, row, strict=True)))


def cursor_of(created_at: int, session: str) -> str:
    """The cursor of a page that ends with that session: ``<created_at>.<session>`` (the
    gateway's sessions list from the log hands out the same)."""
    return f"{created_at}.{session}"


def parse_cursor(value: str) -> tuple[int, str]:
    """``(created_at, session)`` of a cursor; :class:`InvalidInput` if it is not one."""
    at, _, session = value.partition(".")
    moment = int(at) if at.isascii() and at.isdigit() else -1
    if not 0 <= moment <= _MAX_AT:
        raise InvalidInput("invalid cursor: pass back the next_cursor of a page")
    return moment, session


def _list_sessions(db: Db, owner: str, limit: int, cursor: str | None) -> SessionPage:
    """An owner's sessions, newest first (by creation), ``limit`` per page."""
    limit = max(1, min(limit, MAX_PAGE))
    where, args = "owner = ?", list[object]([owner])
    if cursor:
        at, session = parse_cursor(cursor)
        where += " AND (created_at < ? OR (created_at = ? AND session < ?))"
        args += [at, at, session]
    rows = db.all(
        f"SELECT {_SUMMARY_COLUMNS} FROM {{p}}sessions WHERE {where} "
        "ORDER BY created_at DESC, session DESC LIMIT ?",
        *args,
        limit + 1,
    )
    page = [_struct(SessionSummary, r) for r in rows[:limit]]
    next_cursor = cursor_of(page[-1].created_at, page[-1].session) if len(rows) > limit else None
    return SessionPage(sessions=page, next_cursor=next_cursor)


def _usage(db: Db, owner: str, day: str | None) -> UsageReport:
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
    out = [_struct(UsageRow, r) for r in rows]  # the columns in UsageRow's field order
    return UsageReport(
        owner=owner,
        day=day,
        rows=out,
        turns=sum(r.turns for r in out),
        input_tokens=sum(r.input_tokens for r in out),
        output_tokens=sum(r.output_tokens for r in out),
    )
