"""The gateway's read API over the views. Async; every database call runs in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from eventsourcing.persistence import WaitInterruptedError

from threadline.base.config import Settings
from threadline.base.errors import InvalidInput
from threadline.projections import queries
from threadline.projections.aio import in_thread
from threadline.projections.config import ProjectorConfig
from threadline.projections.model import (
    VIEW_NAMES,
    ProjectionErrorRow,
    SessionPage,
    UsageReport,
)
from threadline.projections.recorder import ViewRecorder

#: ``wait(view, position, timeout)`` of a projector running in this process
Waiter = Callable[[str | None, int, float], Awaitable[bool]]


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
        return await in_thread(self.recorder.query, queries.list_sessions, owner, limit, cursor)

    async def usage(self, owner: str, day: str | datetime.date | None = None) -> UsageReport:
        """Tokens, latency and turns per day, provider and model (one UTC day, or all)."""
        if isinstance(day, datetime.date):
            day = day.isoformat()
        elif day is not None:
            try:
                day = datetime.date.fromisoformat(day).isoformat()
            except ValueError:
                raise InvalidInput(f"day must be YYYY-MM-DD, not {day[:40]!r}") from None
        return await in_thread(self.recorder.query, queries.usage, owner, day)

    async def errors(self, limit: int = 100) -> list[ProjectionErrorRow]:
        """The newest projection errors (events the views could not use)."""
        return await in_thread(self.recorder.errors, limit)

    async def positions(self) -> dict[str, int]:
        """Each view's tracked position."""
        return (await in_thread(self.recorder.state)).positions

    async def wait(self, view: str | None, position: int, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Until ``view`` (every view for ``None``) has processed stream position
        ``position`` (read-your-writes). True when it has, False after ``timeout``."""
        if view is not None and view not in VIEW_NAMES:
            raise InvalidInput(f"unknown view {view!r}; views are {', '.join(VIEW_NAMES)}")
        if self._wait is not None:
            return await self._wait(view, position, timeout)
        return await in_thread_wait(self.recorder, view, position, timeout)


async def in_thread_wait(
    recorder: ViewRecorder, view: str | None, position: int, seconds: float
) -> bool:
    """The library's tracking ``wait`` (it polls with backoff) in a worker thread,
    interrupted if the caller is cancelled."""
    interrupt = threading.Event()
    deadline = time.monotonic() + seconds

    def wait_all() -> bool:
        for name in VIEW_NAMES if view is None else (view,):
            try:
                recorder.wait(
                    name, position, timeout=max(0.0, deadline - time.monotonic()),
                    interrupt=interrupt,
                )  # fmt: skip
            except (TimeoutError, WaitInterruptedError):
                return False
        return True

    future = asyncio.ensure_future(asyncio.to_thread(wait_all))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        interrupt.set()
        await asyncio.wait([future])
        raise
