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
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

import msgspec

from threadline.base.aio import in_thread, stop_task
from threadline.base.errors import StoreUnavailable, ThreadlineError
from threadline.events.erasure import decode_erasure
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.sealing import installed
from threadline.events.store import (
    EventStore,
    Stored,
    is_checkpoint_subject,
    is_erasure_subject,
    subject_for,
)
from threadline.projections.config import OnError
from threadline.projections.model import VIEW_NAMES
from threadline.projections.reader import ProjectionReader
from threadline.projections.recorder import (
    TRANSIENT,
    BatchOutcome,
    Broken,
    Resync,
    TrackState,
    ViewRecorder,
)
from threadline.projections.views import View, select_views

log = logging.getLogger(__name__)

_MIN_BACKOFF_S: Final = 0.1
_MAX_BACKOFF_S: Final = 5.0


class ProjectionHalted(ThreadlineError):
    """A view raised on an event and halted there (``on_error = "halt"``)."""

    def __init__(self, broken: Broken) -> None:
        super().__init__(
            f"the {broken.view} view halted at position {broken.position}: {broken.reason}"
        )


class Projector:
    """Applies the log to the views of ``recorder``. ``run()`` until cancelled (or, with
    ``until_end``, until it has caught up with the end of the log, or every view halted).

    A view that raises on an event halts there (``halted``; the others carry on) unless
    ``on_error`` is ``"skip"``; an undecodable record is always quarantined."""

    def __init__(
        self,
        store: EventStore,
        recorder: ViewRecorder,
        *,
        on_error: OnError = "halt",
        views: Sequence[str] | None = None,
        batch_size: int = 1000,
        until_end: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self._views = select_views(views)
        self._batch_size = batch_size
        self._until_end = until_end
        self._on_batch = on_batch
        self.positions: dict[str, int] = dict.fromkeys(VIEW_NAMES, 0)
        #: the views halted by this projector, and the event each halted at
        self.halted: dict[str, Broken] = {}
        self.events = 0
        self.errors = 0  # error rows written: events quarantined, skipped or halted at
        self.resyncs = 0
        self._generation = ""
        self._changed = asyncio.Event()
        self.on_error = on_error
        #: the task running this projector in the background (``serve_projector``)
        self.running: asyncio.Task[None] | None = None
        #: a read API over these views whose ``wait`` is woken by this projector
        self.reader = ProjectionReader(recorder, wait=self.wait)

    def _active(self) -> list[View]:
        return [view for view in self._views if view.name not in self.halted]

    async def load(self) -> None:
        """Read the tracked positions (and the database's generation). A view halted
        here that has been moved past its event since (a rebuild) carries on."""
        state = await in_thread(self.recorder.state)
        self._generation = state.generation
        self.positions = state.positions
        self.halted = {
            name: broken
            for name, broken in self.halted.items()
            if self.positions[name] < broken.position
        }
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
        if not self._active():
            return
        start = min(self.positions[v.name] for v in self._active())
        queue: asyncio.Queue[Stored | None] = asyncio.Queue(self._batch_size * 4)
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
                batch: list[Stored] = []  # what has arrived, up to a batch (None: the end)
                item = await queue.get()
                while item is not None:
                    batch.append(item)
                    if len(batch) >= self._batch_size or queue.empty():
                        break
                    item = queue.get_nowait()
                if batch:
                    await self._apply(batch)
                    if not self._active():
                        return
                if item is None:
                    if failures:
                        raise failures[0]
                    return
        finally:
            await stop_task(pump_task)

    async def _apply(self, batch: list[Stored]) -> None:
        """Apply the events in order; an erasure record between them is applied in its
        place (what comes after it is read without its keys)."""
        for erasures, run in itertools.groupby(batch, lambda s: is_erasure_subject(s.subject)):
            if erasures:
                for item in run:
                    await self._erase(item)
            else:
                await self._apply_events(list(run))

    async def _erase(self, stored: Stored) -> None:
        try:
            keys = list(decode_erasure(stored.data).keys)
        except msgspec.DecodeError:
            log.warning("projector: unreadable erasure record at position %d", stored.position)
            return
        keyring = self.store.keyring or installed()
        if keyring is not None:
            keyring.forget(keys)
        behind = [v.name for v in self._active() if self.positions[v.name] < stored.position]
        await in_thread(self.recorder.erase_keys, keys, stored.position, behind)
        self.positions.update(dict.fromkeys(behind, stored.position))
        self._notify()

    async def _apply_events(self, batch: list[Stored]) -> None:
        outcome = await in_thread(
            self.recorder.apply_batch,
            batch,
            TrackState(self._generation, dict(self.positions)),
            views=self._active(),
            halt=self.on_error == "halt",
            trust=self.store.trust,
        )
        self.positions = outcome.positions
        self.events += sum(not is_checkpoint_subject(item.subject) for item in batch)
        self.errors += len(outcome.errors)
        self.halted.update(outcome.halted)
        _log_errors(outcome)
        self._notify()
        if self._on_batch is not None:
            self._on_batch(len(batch), batch[-1][0])

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def reached(self, view: str | None, position: int) -> bool:
        names = VIEW_NAMES if view is None else (view,)
        return all(self.positions.get(name, 0) >= position for name in names)

    def _stuck(self, view: str | None, position: int) -> bool:
        """A view halted before ``position``: it will not get there by itself."""
        return any(
            b.position <= position for name, b in self.halted.items() if view in (None, name)
        )

    async def wait(self, view: str | None, position: int, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Until ``view`` (every view for ``None``) has processed ``position``.
        False on timeout, or at once if the view halted before that position."""
        try:
            async with asyncio.timeout(timeout):
                while not self.reached(view, position):
                    if self._stuck(view, position):
                        return False
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True


async def raw_events(
    store: EventStore, *, after: int = 0, until_end: bool = False
) -> AsyncIterator[Stored]:
    """Every stored event after position ``after``, undecoded, live (or, with ``until_end``,
    up to the end). JetStream gives the stored bytes directly (``follow_raw``), so a
    corrupt or unknown event reaches the projector and becomes an error row instead of
    stopping the read; other stores (the in-memory one) hold valid events only. The log's
    checkpoints come too (no session's events: the projector only moves its positions
    past them, so a checkpoint at the end leaves no lag)."""
    if isinstance(store, JetStreamEventStore):
        async for item in store.follow_raw([f"{store.prefix}.>"], after=after, until_end=until_end):
            yield item
        return
    end = await store.last_position() if until_end else None
    if end is not None and end <= after:
        return
    async for rec in store.follow_all(after=after):
        yield Stored(rec.position, subject_for(store.prefix, rec.session, rec.kind), rec.raw)
        if end is not None and rec.position >= end:
            return


def _log_errors(outcome: BatchOutcome) -> None:
    for broken in outcome.errors:
        if not broken.view:
            what = "quarantined (undecodable)"
        elif outcome.halted.get(broken.view) is broken:
            what = f"the {broken.view} view halts there"
        else:
            what = f"the {broken.view} view skipped it (on_error=skip)"
        log.error(
            "projection error at position %d (session %r): %s; %s",
            broken.position, broken.session, broken.reason, what,
        )  # fmt: skip
    for name, broken in outcome.halted.items():
        log.error(
            "the %s view halted at position %d: a bug in the view (or data it cannot hold). "
            "Fix it and restart the projector, or rebuild the view with on_error=skip to "
            "put the event aside (docs/projections.md)",
            name, broken.position,
        )  # fmt: skip
