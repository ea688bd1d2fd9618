"""The projector's Prometheus metrics, all sampled when scraped (nothing on the hot path).

* ``threadline_projection_lag_events{view}``: the stream's last sequence minus the
  view's tracked position, read from the tracking table (so it is right whichever
  projector process moves it), and ``threadline_projection_position{view}``;
* ``threadline_projector_events_total``, ``threadline_projector_errors_total``,
  ``threadline_projector_resyncs_total`` and ``threadline_projector_halted`` of the
  projector running in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from threadline.base.metrics import Registry, default_registry
from threadline.events.store import EventStore
from threadline.projections.recorder import ViewRecorder

if TYPE_CHECKING:
    from threadline.projections.projector import Projector

P: Final = "threadline_projector"


def watch_views(
    store: EventStore, recorder: ViewRecorder, registry: Registry | None = None
) -> Callable[[], None]:
    """Sample each view's position and lag when scraped; returns the undo."""
    from threadline.projections.projector import in_thread

    reg = registry or default_registry()
    lag = reg.gauge(
        "threadline_projection_lag_events",
        "Stream last sequence minus the view's tracked position (sampled when scraped).",
        ("view",),
    )
    position = reg.gauge(
        "threadline_projection_position", "The view's tracked stream position.", ("view",)
    )
    seen: set[str] = set()

    async def sample() -> None:
        last = await store.last_position()
        state = await in_thread(recorder.state)
        for view, at in state.positions.items():
            seen.add(view)
            position.set(at, view=view)
            lag.set(max(0, last - at), view=view)

    remove = reg.on_scrape(sample)

    def stop() -> None:
        remove()
        for view in seen:
            lag.remove(view=view)
            position.remove(view=view)

    return stop


def watch_projector(projector: Projector, registry: Registry | None = None) -> Callable[[], None]:
    """The views' lag, and the counts of ``projector`` (sampled when scraped)."""
    reg = registry or default_registry()
    events = reg.counter(f"{P}_events_total", "Events applied to the views by this process.")
    errors = reg.counter(
        f"{P}_errors_total", "Events a view could not use (skipped, or the one it halted at)."
    )
    resyncs = reg.counter(
        f"{P}_resyncs_total", "Times the projector re-read its positions (rebuild swapped in)."
    )
    halted = reg.gauge(f"{P}_halted", "1 when the projector halted at an event (on_error=halt).")

    async def sample() -> None:
        events.set(projector.events)
        errors.set(projector.errors)
        resyncs.set(projector.resyncs)
        halted.set(1 if projector.halted is not None else 0)

    remove = reg.on_scrape(sample)
    unwatch_views = watch_views(projector.store, projector.recorder, reg)

    def stop() -> None:
        remove()
        unwatch_views()

    return stop
