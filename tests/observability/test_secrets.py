"""A provider key never reaches the metrics, the spans or the JSON logs, even when the
provider echoes it back in its error (the dev model does on ``[[fail:401]]``)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.observability.conftest import Spans, run_turn, start_session
from threadline.base.config import Settings
from threadline.base.logs import configure_logging
from threadline.events.jetstream import JetStreamEventStore
from threadline.services.agent.service import serve_agent
from threadline.services.agent.telemetry import AgentTelemetry
from threadline.services.agent.turn import AgentSettings
from threadline.services.runtime.metrics_http import serve_metrics

KEY = "sk-test-OBSERVE-Secret-7731"
ODD_KEY = "q+z.(9)*Ob"  # short, regex metacharacters, not key-shaped
SCENARIOS = [
    "[[fail:401]] hello",
    "[[fail:429 retry-after=0.01 times=1]] hello",
    "[[fail:500]] hello",
    '[[tool:echo {"text": "hi"}]] hello',
]


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The services' own logging set-up (JSON lines, redacted) writing into a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    stderr, sys.stderr = sys.stderr, buffer
    try:
        configure_logging("DEBUG", "json")
    finally:
        sys.stderr = stderr
    yield buffer
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


@pytest.fixture
async def keyed(
    js_store: JetStreamEventStore, devmodel_url: str, tmp_path: Path, telemetry: AgentTelemetry
) -> AsyncIterator[JetStreamEventStore]:
    def provider(env: str) -> dict[str, object]:
        return {
            "api": "openai", "base_url": f"{devmodel_url}/v1", "key_env": env,
            "models": ["threadline-dev"], "default_model": "threadline-dev", "timeout_s": 2,
        }  # fmt: skip

    settings = Settings(
        data_dir=str(tmp_path),
        providers={"keyed": provider("KEYED_KEY"), "odd": provider("ODD_KEY")},
        mcp_servers={
            "threadline": {
                "transport": "stdio",
                "command": [sys.executable, "-m", "threadline.services.mcpserver"],
            }
        },
    )
    agent = AgentSettings(worker="sec", retry_base_s=0.01, max_retries=1, max_attempts=2)
    env = {"KEYED_KEY": KEY, "ODD_KEY": ODD_KEY}
    async with serve_agent(
        settings, js_store, devmodel_url=devmodel_url, agent=agent, env=env, ack_wait_s=5,
        telemetry=telemetry,
    ):  # fmt: skip
        yield js_store


async def test_no_key_in_metrics_spans_or_logs(
    keyed: JetStreamEventStore, spans: Spans, telemetry: AgentTelemetry, json_logs: io.StringIO
) -> None:
    n = 0
    for provider in ("keyed", "odd"):
        for text in SCENARIOS:
            n += 1
            await start_session(keyed, f"sec{n}", provider=provider)
            await run_turn(keyed, f"sec{n}", text, "t1")
    finished = await spans.ended(n)

    stored = keyed.follow_raw([f"{keyed.prefix}.>"], until_end=True)
    log_of_events = b"\n".join([s.data async for s in stored]).decode()
    assert "Incorrect API key" in log_of_events  # the provider's echo really happened

    async with serve_metrics(0, registry=telemetry.registry) as url:
        assert url is not None
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(url)).text
    assert 'threadline_agent_turn_failures_total{kind="auth"} 2' in metrics

    exported = []
    for span in finished:
        exported.append(span.to_json())  # name, attributes, events, status, resource
    spans_text = "\n".join(exported)
    assert "Incorrect API key" in spans_text  # the error is there, redacted

    logs = json_logs.getvalue()
    lines = [json.loads(line) for line in logs.splitlines()]
    assert any(line.get("session") == "sec1" for line in lines)  # the logs were captured
    assert any("trace_id" in line for line in lines)  # and carry the turn's trace

    for secret in (KEY, ODD_KEY, "OBSERVE-Secret"):
        assert secret not in metrics, f"{secret} leaked into /metrics"
        assert secret not in spans_text, f"{secret} leaked into a span"
        assert secret not in logs, f"{secret} leaked into a log line"
        assert secret not in log_of_events, f"{secret} leaked into the event log"
