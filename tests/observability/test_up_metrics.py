"""``threadline up``'s wiring: the gateway's ``/metrics`` shows every service of the
process (agent, projector, gateway), with values that follow real turns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_stream
from tests.observability.promtext import Samples, has, parse, total, value
from threadline.base.config import Settings
from threadline.base.metrics import CONTENT_TYPE
from threadline.events.jetstream import JetStreamEventStore
from threadline.projections import VIEW_NAMES
from threadline.services.cli.stack import PROVIDER_KEY_VARS, start_services
from threadline.services.runtime.natsserver import EmbeddedNats

TOKEN = "obs-token-5e1d"
QUICK = "[[pace:ttft=5,tps=0]]"
DEV = {"provider": "dev", "model": "threadline-dev"}


@dataclass
class Up:
    client: httpx.AsyncClient
    store: JetStreamEventStore

    async def scrape(self) -> tuple[str, Samples]:
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == CONTENT_TYPE  # charset=utf-8 once
        return response.text, parse(response.text)

    async def turn(self, session: str, text: str) -> int:
        """Post ``text``; wait for the turn's end; the terminal event's position."""
        posted = await self.client.post(f"/v1/sessions/{session}/messages", json={"text": text})
        assert posted.status_code == 202, posted.text
        turn = posted.json()["turn_id"]
        async with asyncio.timeout(30):
            async for rec in self.store.follow(session):
                if rec.turn == turn and rec.kind in ("turn_completed", "turn_failed"):
                    return rec.position
        raise AssertionError("unreachable")


@pytest.fixture
async def up(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Up]:
    for var in PROVIDER_KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    store = await JetStreamEventStore.connect(nats_server.url, fresh_stream(), heartbeat_s=0.5)
    settings = Settings(data_dir=str(tmp_path), port=0, tokens=f"{TOKEN}:alice")
    try:
        async with contextlib.AsyncExitStack() as stack:
            running = await start_services(stack, settings, store)
            url = running.urls["gateway_url"]
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as client:
                yield Up(client, store)
    finally:
        await store.close()


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


async def test_up_metrics_follow_turns_fallbacks_tools_and_projections(up: Up) -> None:
    _, before = await up.scrape()
    made = await up.client.post("/v1/sessions", json={"tool_servers": ["threadline"]})
    session = made.json()["id"]

    await up.turn(session, f"{QUICK} hello")
    _, one = await up.scrape()
    assert delta(one, before, "threadline_agent_turns_total", outcome="completed") == 1
    assert delta(one, before, "threadline_agent_time_to_first_token_seconds_count", **DEV) == 1
    assert delta(one, before, "threadline_agent_turn_duration_seconds_count", **DEV) == 1
    assert delta(one, before, "threadline_agent_tokens_total", **DEV, type="input") > 0
    assert delta(one, before, "threadline_agent_tokens_total", **DEV, type="output") > 0

    retried = "[[fail:429 retry-after=0.01 times=1]]"
    await up.turn(session, f'{QUICK} {retried} [[tool:add {{"a": 2, "b": 3}}]]')
    last = await up.turn(session, "[[fail:401]] hi")
    await up.client.get(f"/v1/sessions/{session}", params={"wait_for": last})  # views caught up
    text, after = await up.scrape()

    assert delta(after, one, "threadline_agent_turns_total", outcome="completed") == 1
    assert delta(after, one, "threadline_agent_turns_total", outcome="failed") == 1
    assert delta(after, one, "threadline_agent_turn_failures_total", kind="auth") == 1
    assert delta(after, one, "threadline_agent_fallbacks_total", kind="retry") == 1
    requests = "threadline_agent_provider_requests_total"
    assert delta(after, one, requests, **DEV, outcome="rate_limit") == 1
    assert delta(after, one, requests, **DEV, outcome="auth") == 1
    tool = {"server": "threadline", "tool": "add"}
    assert delta(after, one, "threadline_agent_tool_call_duration_seconds_count", **tool) == 1
    assert delta(after, one, "threadline_agent_tool_calls_total", **tool, outcome="ok") == 1
    assert value(after, "threadline_agent_running_turns") == 0
    backlog = "threadline_agent_consumer_pending_messages"
    assert value(after, backlog, consumer="threadline-agent") == 0

    for view in VIEW_NAMES:  # the projector in the same process: lag sampled at scrape
        assert has(after, "threadline_projection_lag_events", view=view)
        assert value(after, "threadline_projection_lag_events", view=view) == 0
        assert value(after, "threadline_projection_position", view=view) >= last
    assert total(after, "threadline_projector_events_total") >= last
    assert value(after, "threadline_projector_errors_total") == 0

    # the gateway's own metrics are still there
    assert delta(after, before, "threadline_gateway_turns_total", outcome="completed") == 2
    route = {"method": "POST", "route": "/v1/sessions/{session_id}/messages", "status": "202"}
    assert value(after, "threadline_gateway_requests_total", **route) == 3
    assert has(after, "threadline_gateway_sse_clients")
    # no owner, session, token or text in the labels
    for private in ("alice", session, TOKEN, "hello"):
        assert private not in text
