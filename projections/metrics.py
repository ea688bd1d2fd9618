"""The projector's Prometheus metrics, all sampled when scraped (nothing on the hot path).

* from the tracking database (so right whichever projector process moves it):
  ``threadline_projection_lag_events{view}`` (the stream's last sequence minus the
  view's tracked position), ``threadline_projection_position{view}``, and
  ``threadline_projector_halted{view}`` (1 while the view is halted at an event);
* ``threadline_projector_events_total``, ``threadline_projector_errors_total`` and
  ``threadline_projector_resyncs_total`` of the projector running in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from threadline.base.metrics import Registry, default_registry
from threadline.events.store import EventStore
from threadline.projections.projector import Projector
from threadline.projections.rebuild import status
from threadline.projections.recorder import ViewRecorder

P: Final = "threadline_projector"


def watch_views(
    store: EventStore, recorder: ViewRecorder, registry: Registry | None = None
) -> Callable[[], None]:
    """Sample each view's position, lag and halt when scraped; returns the undo."""
    reg = registry or default_registry()
    lag = reg.gauge(
        "threadline_projection_lag_events",
        "Stream last sequence minus the view's tracked position (sampled when scraped).",
        ("view",),
    )
    position = reg.gauge(
        "threadline_projection_position", "The view's tracked stream position.", ("view",)
    )
    halted = reg.gauge(
        f"{P}_halted",
        "1 while the view is halted at an event it raised on (it needs a fix or a rebuild).",
        ("view",),
    )

    async def sample() -> None:
        for view in await status(store, recorder):
            position.set(view.position, view=view.view)
            lag.set(view.lag, view=view.view)
            halted.set(view.halted_at is not None, view=view.view)

    remove = reg.on_scrape(sample)

    def stop() -> None:
        remove()
        for gauge in (lag, position, halted):
            gauge.clear()

    return stop


def watch_projector(projector: Projector, registry: Registry | None = None) -> Callable[[], None]:
    """The views' lag, and the counts of ``projector`` (sampled when scraped)."""
    reg = registry or default_registry()
    events = reg.counter(f"{P}_events_total", "Events applied to the views by this process.")
    errors = reg.counter(
        f"{P}_errors_total",
        "Error rows written: undecodable events quarantined, events a view raised on.",
    )
    resyncs = reg.counter(
        f"{P}_resyncs_total", "Times the projector re-read its positions (rebuild swapped in)."
    )

    async def sample() -> None:
        events.set(projector.events)
        errors.set(projector.errors)
        resyncs.set(projector.resyncs)

    remove = reg.on_scrape(sample)
    unwatch_views = watch_views(projector.store, projector.recorder, reg)

    def stop() -> None:
        remove()
        unwatch_views()

    return stop
