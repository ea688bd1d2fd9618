"""The projector as a background service of a process (``threadline up``, ``threadline
projector``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from threadline.base.aio import in_thread, stop_task
from threadline.base.config import Settings
from threadline.events.store import EventStore
from threadline.projections.config import ProjectorConfig
from threadline.projections.metrics import watch_projector
from threadline.projections.projector import Projector

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serve_projector(
    settings: Settings, store: EventStore, **overrides: Any
) -> AsyncIterator[Projector]:
    """Run the projector in the background for as long as the context is open.

    Yields the :class:`Projector` (configured by ``settings``, then ``overrides`` of
    :class:`ProjectorConfig`); ``projector.reader`` is the gateway's read API (its
    ``wait`` is woken in-process), ``projector.running`` the task running it. On exit
    the task is cancelled, the batch in flight commits, and the database connections
    close. Its metrics go to the process's registry.
    """
    config = ProjectorConfig.from_settings(settings, **overrides)
    recorder = await in_thread(config.open)
    projector = Projector(store, recorder, on_error=config.on_error, batch_size=config.batch_size)
    try:
        await projector.load()
        task = projector.running = asyncio.create_task(projector.run(), name="projector")
        unwatch = watch_projector(projector)
        try:
            yield projector
        finally:
            unwatch()
            await stop_task(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("projector stopped: %r", task.exception())
    finally:
        await in_thread(recorder.close)
