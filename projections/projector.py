"""The projector: follows the log and applies it to the views, a batch per transaction.

It resumes after each view's tracked position, reads the stored bytes in order, and
hands whatever has arrived (up to ``batch_size`` events, no waiting for more) to a
worker thread that decodes and applies it in one transaction with the tracking
records. While a batch commits the next one gathers, so batches grow under load and
stay at one event when idle (no added latency). A rebuild swapped in underneath, or
another projector moving the tracking on, makes it re-read the positions and resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from threadline.base.config import Settings
from threadline.base.errors import StoreUnavailable, ThreadlineError
from threadline.base.metrics import Registry
from threadline.events.store import EventStore
from threadline.projections.batch import TRANSIENT, BatchOutcome, Broken, Resync, TrackState
from threadline.projections.config import OnError, ProjectorConfig
from threadline.projections.metrics import watch_projector
from threadline.projections.model import VIEW_NAMES
from threadline.projections.recorder import ViewRecorder
from threadline.projections.source import raw_events
from threadline.projections.views import select_views

if TYPE_CHECKING:
    from threadline.projections.reader import ProjectionReader

log = logging.getLogger(__name__)
T = TypeVar("T")

_MIN_BACKOFF_S: Final = 0.1
_MAX_BACKOFF_S: Final = 5.0


class ProjectionHalted(ThreadlineError):
    """``on_error = "halt"`` stopped the projector at an event it cannot use."""

    def __init__(self, broken: Broken) -> None:
        super().__init__(f"projection halted at position {broken.position}: {broken.reason}")
        self.position = broken.position
        self.reason = broken.reason


async def in_thread(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a synchronous call in a worker thread; if cancelled, let it finish first
    (a transaction is never abandoned half-way, and nothing is closed under it)."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


async def stop_task(task: asyncio.Task[object]) -> None:
    """Cancel ``task`` and wait until it has finished. The cancellation is repeated if
    the task carries on: on Python 3.11 ``asyncio.wait_for`` (used by nats-py's
    ``next_msg``) can swallow a cancellation that arrives together with a message."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.25)


class Projector:
    """Applies the log to the views of ``recorder``. ``run()`` until cancelled (or, with
    ``until_end``, until it has caught up with the end of the log)."""

    def __init__(
        self,
        store: EventStore,
        recorder: ViewRecorder,
        *,
        on_error: OnError = "skip",
        views: Sequence[str] | None = None,
        batch_size: int = 1000,
        until_end: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self._views = select_views(views)
        self._halt = on_error == "halt"
        self._batch_size = batch_size
        self._until_end = until_end
        self._on_batch = on_batch
        self.positions: dict[str, int] = dict.fromkeys(VIEW_NAMES, 0)
        self.halted: Broken | None = None
        self.events = 0
        self.errors = 0  # events a view could not use (skipped, or the one halted at)
        self.resyncs = 0
        self._generation = ""
        self._changed = asyncio.Event()
        self._reader: ProjectionReader | None = None

    @property
    def reader(self) -> ProjectionReader:
        """A read API over these views whose ``wait`` is woken by this projector."""
        if self._reader is None:
            from threadline.projections.reader import ProjectionReader

            self._reader = ProjectionReader(self.recorder, projector=self)
        return self._reader

    async def load(self) -> None:
        """Read the tracked positions (and the database's generation)."""
        state = await in_thread(self.recorder.state)
        self._generation = state.generation
        self.positions = state.positions
        self._notify()

    async def run(self) -> None:
        backoff = _MIN_BACKOFF_S
        while True:
            events = self.events
            try:
                await self.load()
                await self._consume()
                return
            except Resync as exc:
                self.resyncs += 1
                log.info("projector: %s; resuming from the tracked positions", exc)
            except (*TRANSIENT, StoreUnavailable) as exc:
                backoff = _MIN_BACKOFF_S if self.events > events else backoff
                log.warning("projector: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)  # reconnect backoff, not synchronisation
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _consume(self) -> None:
        start = min(self.positions[v.name] for v in self._views)
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(self._batch_size * 4)
        failures: list[Exception] = []

        async def pump() -> None:
            try:
                async for item in raw_events(self.store, after=start, until_end=self._until_end):
                    await queue.put(item)
            except Exception as exc:  # handed to the consumer, which raises it
                failures.append(exc)
            await queue.put(None)

        pump_task = asyncio.create_task(pump(), name="projector-read")
        try:
            while True:
                batch, end = self._take(await queue.get(), queue)
                if batch and (await self._apply(batch)).halted:
                    return
                if end:
                    if failures:
                        raise failures[0]
                    return
        finally:
            await stop_task(pump_task)

    def _take(
        self, first: tuple[int, bytes] | None, queue: asyncio.Queue[tuple[int, bytes] | None]
    ) -> tuple[list[tuple[int, bytes]], bool]:
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._batch_size and not queue.empty():
            item = queue.get_nowait()
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _apply(self, batch: list[tuple[int, bytes]]) -> BatchOutcome:
        state = TrackState(self._generation, dict(self.positions))
        outcome = await in_thread(
            self.recorder.apply_batch, batch, state, views=self._views, halt=self._halt
        )
        self.positions = outcome.positions
        self.events += len(batch)
        self.errors += len(outcome.errors)
        for broken in outcome.errors:
            log.error(
                "projection error at position %d (session %r): %s; %s",
                broken.position, broken.session, broken.reason,
                "halting" if broken is outcome.halted else "skipped",
            )  # fmt: skip
        if outcome.halted is not None:
            self.halted = outcome.halted
            log.error(
                "projector halted at position %d. Fix the event's cause, or set "
                "THREADLINE_PROJECTIONS_ON_ERROR=skip, and start it again",
                outcome.halted.position,
            )
        self._notify()
        if self._on_batch is not None:
            self._on_batch(len(batch), batch[-1][0])
        return outcome

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def reached(self, view: str | None, position: int) -> bool:
        names = VIEW_NAMES if view is None else (view,)
        return all(self.positions.get(name, 0) >= position for name in names)

    async def wait(self, view: str | None, position: int, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Until ``view`` (every view for ``None``) has processed ``position``.
        False on timeout, or at once if the projector halted before that position."""
        try:
            async with asyncio.timeout(timeout):
                while not self.reached(view, position):
                    if self.halted is not None and self.halted.position <= position:
                        return False
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True


@contextlib.asynccontextmanager
async def serve_projector(
    settings: Settings, store: EventStore, *, registry: Registry | None = None
) -> AsyncIterator[Projector]:
    """Run the projector in the background for as long as the context is open.

    Yields the :class:`Projector`; ``projector.reader`` is the gateway's read API
    (its ``wait`` is woken in-process). On exit the task is cancelled, the batch in
    flight commits, and the database connections close. Its metrics go to
    ``registry`` (default: the process's).
    """
    config = ProjectorConfig.from_settings(settings)
    recorder = await in_thread(config.open)
    projector = Projector(store, recorder, on_error=config.on_error, batch_size=config.batch_size)
    try:
        await projector.load()
        task = asyncio.create_task(projector.run(), name="projector")
        unwatch = watch_projector(projector, registry)
        try:
            yield projector
        finally:
            unwatch()
            await stop_task(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("projector stopped: %r", task.exception())
    finally:
        await in_thread(recorder.close)
