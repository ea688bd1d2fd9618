"""``threadline agent --metrics-port`` and ``threadline projector --metrics-port``: each
serves its own ``/metrics``; the agent's consumer backlog and the views' lag are read
from NATS and the tracking table when scraped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.observability.conftest import start_session
from tests.observability.promtext import Samples, parse, value
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import UserMessage
from threadline.events.store import NewEvent
from threadline.projections import VIEW_NAMES
from threadline.services.cli.stack import PROVIDER_KEY_VARS
from threadline.services.runtime.asgi import serve_asgi

CONSUMER = {"consumer": "threadline-agent"}


@contextlib.asynccontextmanager
async def command(
    nats_url: str,
    store: JetStreamEventStore,
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> AsyncIterator[str]:
    """``threadline ARGS --metrics-port 0`` in a subprocess; yields its metrics URL."""
    environ = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("THREADLINE_", "OTEL_")) and k not in PROVIDER_KEY_VARS
    }  # fmt: skip
    environ |= {
        "THREADLINE_NATS_URL": nats_url, "THREADLINE_STREAM": store.settings.name,
        "THREADLINE_PREFIX": store.settings.prefix, "THREADLINE_DATA_DIR": str(data_dir),
        **(env or {}),
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", *args, "--metrics-port", "0",
        env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output = ""
    try:
        async with asyncio.timeout(30):
            while (found := re.search(r"metrics on (http://\S+)", output)) is None:
                line = (await proc.stdout.readline()).decode()
                assert line, output
                output += line
        yield found[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, output + out.decode()


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A minimal OTLP/HTTP trace collector: yields its base URL and what it received."""
    received: list[ExportTraceServiceRequest] = []

    async def app(scope: dict[str, object], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/v1/traces":
            received.append(ExportTraceServiceRequest.FromString(body))
        headers = [(b"content-type", b"application/x-protobuf")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async with serve_asgi(app, name="otlp receiver") as url:
        yield url, received


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200
    return parse(response.text)


async def until(url: str, check: object, wait_s: float = 20) -> Samples:
    """Scrape until ``check(samples)`` holds (the service runs in another process)."""
    assert callable(check)
    async with asyncio.timeout(wait_s):
        while not check(samples := await scrape(url)):  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.05)
    return samples


async def terminal(store: JetStreamEventStore, session: str) -> None:
    async with asyncio.timeout(30):
        async for rec in store.follow(session):
            if rec.kind in ("turn_completed", "turn_failed"):
                return


async def test_a_standalone_agent_serves_its_metrics_and_exports_its_spans(
    nats_url: str, js_store: JetStreamEventStore, devmodel_url: str, tmp_path: Path
) -> None:
    env = {"THREADLINE_DEVMODEL_URL": devmodel_url, "THREADLINE_OTEL_EXPORTER": "otlp"}
    async with (
        otlp_receiver() as (collector, exported),
        command(
            nats_url, js_store, tmp_path, "agent", "--concurrency", "1",
            env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector},
        ) as url,
    ):  # fmt: skip
        sessions = ["sa1", "sa2", "sa3"]
        for session in sessions:  # one at a time: the others wait in the consumer
            await start_session(js_store, session, tools=False)
            text = UserMessage(text="[[pace:ttft=700]] [[words:2]]")
            await js_store.append(session, NewEvent(event=text, turn="t1"))
        samples = await until(url, lambda s: value(s, "threadline_agent_running_turns") == 1)
        assert value(samples, "threadline_agent_consumer_pending_messages", **CONSUMER) == 2
        assert value(samples, "threadline_agent_consumer_ack_pending_messages", **CONSUMER) == 1
        for session in sessions:
            await terminal(js_store, session)
        done = "threadline_agent_turns_total"
        samples = await until(url, lambda s: value(s, done, outcome="completed") == 3)
        dev = {"provider": "dev", "model": "threadline-dev"}
        assert value(samples, "threadline_agent_time_to_first_token_seconds_count", **dev) == 3
        ttft = "threadline_agent_time_to_first_token_seconds_bucket"
        assert value(samples, ttft, **dev, le="0.5") == 0  # each waited 0.7 s for its answer
        assert value(samples, "threadline_agent_consumer_pending_messages", **CONSUMER) == 0
        assert not any(name.startswith("threadline_gateway") for name, _ in samples)
    # THREADLINE_OTEL_EXPORTER=otlp: the agent flushed its spans to the collector as it stopped
    names = [
        span.name
        for request in exported
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert names.count("invoke_agent threadline") == 3
    assert names.count("chat threadline-dev") == 3
    services = {
        attr.value.string_value
        for request in exported
        for resource in request.resource_spans
        for attr in resource.resource.attributes
        if attr.key == "service.name"
    }
    assert services == {"threadline-agent"}


async def test_a_standalone_projector_serves_events_and_lag(
    nats_url: str, js_store: JetStreamEventStore, tmp_path: Path
) -> None:
    for session in ("p1", "p2"):
        await start_session(js_store, session, tools=False)
        await js_store.append(session, NewEvent(event=UserMessage(text="hi"), turn="t1"))
    last = await js_store.last_position()
    async with command(nats_url, js_store, tmp_path, "projector") as url:
        samples = await until(url, lambda s: value(s, "threadline_projector_events_total") == last)
        for view in VIEW_NAMES:
            assert value(samples, "threadline_projection_lag_events", view=view) == 0
            assert value(samples, "threadline_projection_position", view=view) == last
        assert value(samples, "threadline_projector_errors_total") == 0
        assert value(samples, "threadline_projector_halted") == 0
