"""On JetStream: a worker whose in-progress ack fails (here: its consumer was deleted)
stops the running attempt at once and says so (an error line and a metric)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.conftest import Harness, agent_settings_for
from threadline.base.metrics import Registry
from threadline.events.fold import fold
from threadline.events.jetstream import JetStreamEventStore
from threadline.services.agent.service import QUEUE_NAME, serve_agent
from threadline.services.agent.telemetry import AgentTelemetry
from threadline.services.agent.turn import AgentSettings
from threadline.services.devmodel import DevModelSettings, serve


class _Seen(logging.Handler):
    """Sets ``event`` when a line containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.ERROR)
        self.text = text
        self.event = asyncio.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.lines.append(record.getMessage())
            self.event.set()


@pytest.fixture
def heartbeat_failures() -> Iterator[_Seen]:
    seen = _Seen("heartbeat failed")
    logger = logging.getLogger("threadline.services.agent.worker")
    logger.addHandler(seen)
    yield seen
    logger.removeHandler(seen)


async def test_deleted_consumer_stops_the_running_attempt(
    js_store: JetStreamEventStore, tmp_path: Path, heartbeat_failures: _Seen
) -> None:
    telemetry = AgentTelemetry(Registry())
    agent = AgentSettings(worker="hb", delta_window_s=0.005)
    harness = Harness(js_store)
    async with (
        serve(DevModelSettings(ttft_ms=0, tokens_per_second=20)) as url,
        serve_agent(
            agent_settings_for(str(tmp_path)), js_store, devmodel_url=url, agent=agent, env={},
            ack_wait_s=1.5, telemetry=telemetry,
        ) as worker,
    ):  # fmt: skip
        await harness.start("hb", tools=False)
        await harness.say("hb", "go [[words:400]]", "t1")
        async with asyncio.timeout(30):
            async for rec in js_store.follow("hb"):
                if rec.kind == "text_delta":
                    break  # streaming: 20 s of words to go
            await js_store.nc.jetstream().delete_consumer(js_store.settings.name, QUEUE_NAME)
            await heartbeat_failures.event.wait()
        assert "hb" not in worker._running  # the attempt was stopped before the line
        assert telemetry.heartbeat_failures.value() == 1
        [line] = heartbeat_failures.lines
        assert "session hb" in line and "turn t1" in line and "is gone" in line
        assert fold(await js_store.load("hb")).status("t1") == "running"  # no terminal event
