"""Rebuild views from the log into a fresh database and swap them in; view status.

A rebuild projects the whole log (up to its end when the rebuild reaches it) into a
scratch database beside the live one — a new SQLite file, or a new PostgreSQL schema —
then swaps the rebuilt views and their tracking in, in one transaction. A projector
running meanwhile keeps the old views serving until the swap, then notices the new
generation and carries on from the rebuilt tracking: nothing is lost or applied twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import msgspec

from threadline.base.aio import in_thread
from threadline.events.store import EventStore
from threadline.projections.config import ProjectorConfig
from threadline.projections.model import VIEW_NAMES, ViewStatus
from threadline.projections.projector import ProjectionHalted, Projector
from threadline.projections.recorder import ViewRecorder
from threadline.projections.views import select_views


class RebuildResult(msgspec.Struct, frozen=True, kw_only=True):
    views: list[str]
    events: int
    #: the tracked position the rebuilt views were swapped in at
    position: int
    seconds: float


async def rebuild(
    store: EventStore,
    config: ProjectorConfig,
    views: Sequence[str] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildResult:
    """Rebuild ``views`` (all for ``None``) from the log and swap them in.

    ``progress(events_in_batch, last_position)`` is called after every batch. Raises
    :class:`ProjectionHalted` (leaving the live views untouched) if a view raised on
    an event and ``on_error`` is ``"halt"``.
    """
    names = [view.name for view in select_views(views)]
    started = time.perf_counter()
    fresh = await in_thread(config.scratch)
    try:
        projector = Projector(
            store, fresh, on_error=config.on_error, views=names,
            batch_size=config.batch_size, until_end=True, on_batch=progress,
        )  # fmt: skip
        await projector.run()
        for broken in projector.halted.values():
            raise ProjectionHalted(broken)
        live = await in_thread(config.open)
        try:
            await in_thread(live.swap_in, fresh, names, errors=views is None)
        finally:
            await in_thread(live.close)
    finally:
        await in_thread(fresh.drop)
    return RebuildResult(
        views=names,
        events=projector.events,
        position=min(projector.positions[name] for name in names),
        seconds=time.perf_counter() - started,
    )


async def status(store: EventStore, recorder: ViewRecorder) -> list[ViewStatus]:
    """Per view: tracked position, the stream's last position, the lag, and where
    the view is halted (if it is)."""
    last = await store.last_position()
    state = await in_thread(recorder.state)
    return [
        ViewStatus(
            view=name,
            position=state.positions[name],
            last_position=last,
            halted_at=state.halted.get(name),
        )
        for name in VIEW_NAMES
    ]
