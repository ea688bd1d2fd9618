"""A :class:`HistoryReader` over the projections' views (``threadline.projections``).

``ProjectionHistory(reader)`` serves the sessions list from the sessions view (same
cursor format as the default reader) and ``GET /v1/usage`` from the usage view;
``wait`` is the projection reader's (woken by an in-process projector, else polling the
tracking table). A session itself is never read from here: ``GET /v1/sessions/{id}`` is
always the fold of its events (``history.read_session``).
"""

from __future__ import annotations

from threadline.projections import ProjectionReader
from threadline.projections import model as pm
from threadline.services.gateway.history import view_of
from threadline.services.gateway.models import SessionPage, SessionSummary


class ProjectionHistory:
    """The sessions list and usage from the views of ``reader``."""

    def __init__(self, reader: ProjectionReader) -> None:
        self.reader = reader

    async def list_sessions(self, owner: str, *, limit: int, cursor: str | None) -> SessionPage:
        page = await self.reader.list_sessions(owner, limit, cursor)
        return SessionPage(
            sessions=[_summary(s) for s in page.sessions], next_cursor=page.next_cursor
        )

    async def wait(self, position: int, *, timeout_s: float) -> bool:
        return await self.reader.wait(None, position, timeout_s)

    async def usage(self, owner: str, *, day: str | None) -> pm.UsageReport:
        return await self.reader.usage(owner, day)


def _summary(s: pm.SessionSummary) -> SessionSummary:
    # position 0: the sessions view keeps the latest position, not the first event's
    return view_of(SessionSummary, s, id=s.session, position=0, forked_from=s.forked_from or None)
