"""Read models built from the log, with exactly-once tracking (``eventsourcing``).

* :func:`serve_projector` runs the projector in the background (``threadline up``);
  :class:`Projector` is the projector itself (``threadline projector``).
* :class:`ProjectionReader` is the gateway's async read API: ``list_sessions``,
  ``get_session``, ``usage``, and ``wait`` for read-your-writes.
* :func:`rebuild` and :func:`status` back ``threadline projections``.
* :func:`session_at` (as-of) and :func:`fork_session` work on the log directly.

See docs/projections.md.
"""

from __future__ import annotations

from threadline.projections.asof import SessionNotFound, session_at
from threadline.projections.config import ProjectorConfig
from threadline.projections.fork import fork_session
from threadline.projections.model import (
    VIEW_NAMES,
    FallbackView,
    MessageView,
    ProjectionErrorRow,
    SessionDetail,
    SessionPage,
    SessionSummary,
    ToolCallView,
    TurnView,
    UsageReport,
    UsageRow,
    ViewStatus,
)
from threadline.projections.projector import ProjectionHalted, Projector
from threadline.projections.reader import ProjectionReader
from threadline.projections.rebuild import RebuildResult, rebuild, status
from threadline.projections.recorder import ViewRecorder
from threadline.projections.serve import serve_projector

__all__ = [
    "VIEW_NAMES",
    "FallbackView",
    "MessageView",
    "ProjectionErrorRow",
    "ProjectionHalted",
    "ProjectionReader",
    "Projector",
    "ProjectorConfig",
    "RebuildResult",
    "SessionDetail",
    "SessionNotFound",
    "SessionPage",
    "SessionSummary",
    "ToolCallView",
    "TurnView",
    "UsageReport",
    "UsageRow",
    "ViewRecorder",
    "ViewStatus",
    "fork_session",
    "rebuild",
    "serve_projector",
    "session_at",
    "status",
]
