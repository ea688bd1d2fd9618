"""Read models built from the log, with exactly-once tracking (``eventsourcing``).

* :func:`serve_projector` runs the projector in the background (``threadline up``);
  :class:`Projector` is the projector itself (``threadline projector``).
* :class:`ProjectionReader` is the gateway's async read API: ``list_sessions``,
  ``usage``, and ``wait`` for read-your-writes (a session's history is the fold of its
  events, ``threadline.events.fold``).
* :func:`rebuild` and :func:`status` back ``threadline projections``.
* :func:`session_at` (as-of) works on the log directly; forks are a command
  (``threadline.services.commands``).

See docs/projections.md.
"""

from __future__ import annotations

from threadline.projections.asof import session_at
from threadline.projections.config import ProjectorConfig
from threadline.projections.model import VIEW_NAMES
from threadline.projections.projector import ProjectionHalted, Projector
from threadline.projections.reader import ProjectionReader
from threadline.projections.rebuild import rebuild, status
from threadline.projections.serve import serve_projector

__all__ = [
    "VIEW_NAMES",
    "ProjectionHalted",
    "ProjectionReader",
    "Projector",
    "ProjectorConfig",
    "rebuild",
    "serve_projector",
    "session_at",
    "status",
]
