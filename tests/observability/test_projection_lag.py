"""Projection lag is the stream's last sequence minus each view's tracked position,
read when scraped: it grows while nothing projects and falls to 0 once the projector
has caught up."""

from __future__ import annotations

from pathlib import Path

from tests.observability.conftest import start_session
from tests.observability.promtext import has, parse, value
from threadline.base.aio import in_thread
from threadline.base.config import Settings
from threadline.base.metrics import Registry
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import UserMessage
from threadline.events.store import NewEvent
from threadline.projections import VIEW_NAMES, Projector, ProjectorConfig
from threadline.projections.metrics import watch_projector


async def test_projection_lag_per_view(js_store: JetStreamEventStore, tmp_path: Path) -> None:
    await start_session(js_store, "lag1", tools=False)
    for i in range(4):
        await js_store.append("lag1", NewEvent(event=UserMessage(text=f"m{i}"), turn=f"t{i}"))
    config = ProjectorConfig.from_settings(Settings(data_dir=str(tmp_path)))
    recorder = await in_thread(config.open)
    registry = Registry()
    try:
        projector = Projector(js_store, recorder, until_end=True)
        await projector.load()
        unwatch = watch_projector(projector, registry)

        samples = parse(await registry.render())
        for view in VIEW_NAMES:
            assert value(samples, "threadline_projection_lag_events", view=view) == 5
            assert value(samples, "threadline_projection_position", view=view) == 0
        assert value(samples, "threadline_projector_events_total") == 0

        await projector.run()  # until the end of the log
        samples = parse(await registry.render())
        for view in VIEW_NAMES:
            assert value(samples, "threadline_projection_lag_events", view=view) == 0
            assert value(samples, "threadline_projection_position", view=view) == 5
        assert value(samples, "threadline_projector_events_total") == 5

        await js_store.append("lag1", NewEvent(event=UserMessage(text="late"), turn="t9"))
        samples = parse(await registry.render())
        assert value(samples, "threadline_projection_lag_events", view=VIEW_NAMES[0]) == 1

        unwatch()
        samples = parse(await registry.render())
        assert not has(samples, "threadline_projection_lag_events", view=VIEW_NAMES[0])
    finally:
        await in_thread(recorder.close)
