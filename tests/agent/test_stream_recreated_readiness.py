"""Issue 12 item 9, an agent on its own (``threadline agent --metrics-port``): its
``/readyz`` beside ``/metrics`` answers 503 while its work-queue consumer is missing
(the stream was deleted for a restore) and 200 once it has made it again."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.agent.conftest import agent_settings_for
from tests.support.logged import watching
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.readiness import problems
from threadline.events.stream import ensure_stream
from threadline.services.agent.service import serve_agent
from threadline.services.runtime.metrics_http import serve_metrics

AGENT_MISSING = "'threadline-agent' is missing"
#: the agents' work queue and the approval deadlines' queue both come back
RECREATED = ("'threadline-agent' re-created", "'threadline-approval-deadlines' re-created")


async def test_an_agents_readiness_follows_its_consumer(
    js_store: JetStreamEventStore, tmp_path: Path, devmodel_url: str
) -> None:
    settings = agent_settings_for(str(tmp_path))
    with watching("threadline.events.jetstream_queue", AGENT_MISSING, *RECREATED) as log:
        async with (
            serve_agent(settings, js_store, devmodel_url=devmodel_url, env={}),
            serve_metrics(0, ready=lambda: problems(js_store)) as metrics,
            httpx.AsyncClient() as http,
        ):
            assert metrics is not None
            readyz = metrics.removesuffix("/metrics") + "/readyz"
            assert (await http.get(readyz)).json() == {"status": "ok", "checks": {}}

            await js_store.nc.jetstream().delete_stream(js_store.settings.name)
            await log.wait(AGENT_MISSING)
            response = await http.get(readyz)
            assert response.status_code == 503
            assert "threadline-agent" in response.json()["checks"]["work_queue"]

            await ensure_stream(js_store.nc, js_store.settings)
            for phrase in RECREATED:  # every queue of the store: readiness waits for all
                await log.wait(phrase)
            assert (await http.get(readyz)).status_code == 200
