"""The read models: sessions list and usage. Each owns its tables.

(A session's history is not a view: it is the session model, the fold of its events.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from threadline.base.errors import InvalidInput
from threadline.projections.model import VIEW_NAMES
from threadline.projections.views.base import Rec, View
from threadline.projections.views.sessions import SessionsView
from threadline.projections.views.usage import UsageView

VIEWS: Final[tuple[View, ...]] = (SessionsView(), UsageView())


def select_views(names: Sequence[str] | None) -> tuple[View, ...]:
    """The views with these names (all of them for ``None``), in projection order."""
    if names is None:
        return VIEWS
    unknown = sorted(set(names) - set(VIEW_NAMES))
    if unknown:
        raise InvalidInput(f"unknown view {', '.join(unknown)}; views are {', '.join(VIEW_NAMES)}")
    return tuple(view for view in VIEWS if view.name in names)


__all__ = ["VIEWS", "Rec", "View", "select_views"]
