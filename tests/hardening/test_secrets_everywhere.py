"""Item 9, secrets: no configured key in the event log, an HTTP body, a log line, the
metrics or a span, whatever fails.

One provider per fake key of the session (tests/support/secret_scan.py: key-shaped and
not, six and four characters, regex metacharacters and a space, non-ASCII), both wire
formats, all pointing at the dev model, which echoes a rejected key in its 401 body as
some providers do. Through the gateway (REST and the AI SDK endpoint) with the agent,
every fault scenario runs on every provider: 401, 429 then success, 500, a dropped
stream, a stall past the timeout, Ollama's "does not support tools", context too long, a
tool call whose MCP server holds a fake token, and a plain answer. Bad credentials made
of the keys are sent to the gateway too. Then everything is scanned for every key:

* every stored event (the raw bytes of the whole stream);
* every HTTP response body the test received (errors, SSE, AI SDK streams);
* ``/metrics`` of the gateway and the agent's metrics registry;
* every span the agent exported (OpenTelemetry's in-memory exporter);
* every log line, formatted as the services' logging does (the session-wide scan of
  tests/conftest.py watches the same keys across the whole suite).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.hardening.stack import BUNDLED_MCP, Stack, running_stack
from tests.support import secret_scan
from tests.support.secret_scan import FAKE_KEYS, ScanHandler
from threadline.base.metrics import Registry
from threadline.base.redact import register_secret
from threadline.services.agent.telemetry import AgentTelemetry
from threadline.services.agent.tools.content import secret_forms
from threadline.services.agent.turn import AgentSettings
from threadline.services.devmodel import DevModelSettings
from threadline.services.runtime.natsserver import EmbeddedNats

TOOL_TOKEN = "tlfake-TOOL-token-5521"
SCENARIOS = [
    "[[fail:401]] hello",
    "[[fail:429 retry-after=0.01 times=1]] hello",
    "[[fail:500]] hello",
    "[[drop:after=1]] hello",
    "[[stall:1500]] hello",
    "[[fail:400-notools]] hello",
    "[[fail:context]] hello",
    '[[tool:echo {"text": "hi"}]] hello',
    "plain hello",
]


def providers(model_url: str) -> dict[str, Any]:
    """A provider per fake key: Anthropic's wire for the Anthropic-shaped one."""
    out: dict[str, Any] = {}
    for name in FAKE_KEYS:
        anthropic = "ANTHROPIC" in name
        out[name.removeprefix("THREADLINE_FAKE_").lower().replace("_", "-")] = {
            "api": "anthropic" if anthropic else "openai",
            "base_url": model_url if anthropic else f"{model_url}/v1",
            "key_env": name,
            "models": ["threadline-dev"],
            "default_model": "threadline-dev",
            "timeout_s": 0.5,
        }
    return out


@pytest.fixture
def log_lines() -> Iterator[ScanHandler]:
    """This test's log lines (debug ones too), formatted as the services' logging does,
    scanned."""
    scan = ScanHandler({v: k for k, v in FAKE_KEYS.items()} | {TOOL_TOKEN: "TOOL_TOKEN"})
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)  # every line, debug included, for this test
    root.addHandler(scan)
    yield scan
    root.removeHandler(scan)
    root.setLevel(level)


async def run_scenarios(stack: Stack, bodies: list[bytes]) -> int:
    """Every scenario on every provider, half through REST and half through /api/chat."""
    alice = stack.client("alice")
    turns = 0
    for index, provider in enumerate(providers(stack.model_url)):
        session = await stack.new_session(provider=provider, tool_servers=["threadline"])
        for n, text in enumerate(SCENARIOS):
            if (index + n) % 2:
                turn = await stack.say(session, text)
                await stack.until_terminal(session, turn)
            else:
                part = {"type": "text", "text": text}
                chat = {
                    "id": session,
                    "messages": [{"id": f"m{n}", "role": "user", "parts": [part]}],
                }
                async with asyncio.timeout(60):
                    answer = await alice.post("/api/chat", json=chat, timeout=60)
                bodies.append(answer.content)
            turns += 1
        async with alice.stream("GET", f"/v1/sessions/{session}/events") as events:
            async with asyncio.timeout(20):
                async for chunk in events.aiter_bytes():
                    bodies.append(chunk)
                    if b"event: turn_" in chunk and chunk.count(b"event: turn_") >= 1:
                        break
        bodies.append((await alice.get(f"/v1/sessions/{session}")).content)
        bodies.append((await alice.get(f"/v1/sessions/{session}/export")).content)
    return turns


async def test_no_key_anywhere_whatever_fails(
    nats_server: EmbeddedNats,
    tmp_path: Path,
    log_lines: ScanHandler,
    figure: Callable[[str], None],
) -> None:
    assert all(os.environ[name] == value for name, value in FAKE_KEYS.items())
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    registry = Registry()
    mcp = {
        "threadline": {
            "transport": "stdio",
            "command": BUNDLED_MCP,
            "env": {"THREADLINE_TOOL_TOKEN": TOOL_TOKEN},
        }
    }
    agent = AgentSettings(worker="sec", retry_base_s=0.01, max_retries=1, max_attempts=2)
    bodies: list[bytes] = []
    async with running_stack(
        nats_server.url, tmp_path, providers=providers, mcp_servers=mcp,
        env={name: os.environ[name] for name in FAKE_KEYS}, agent=agent,
        devmodel=DevModelSettings.fast(),
        telemetry=AgentTelemetry(registry, tracing.get_tracer("hardening")),
    ) as stack:  # fmt: skip
        turns = await run_scenarios(stack, bodies)
        # credentials made of the keys: refused without being echoed
        for value in FAKE_KEYS.values():
            for header in (f"Bearer {value}", value):
                async with httpx.AsyncClient(base_url=stack.url) as anyone:
                    try:
                        answer = await anyone.get("/v1/sessions", headers={"Authorization": header})
                    except UnicodeEncodeError:  # not sendable as a header at all
                        continue
                assert answer.status_code == 401
                bodies.append(answer.content)
        metrics = (await stack.client("alice").get("/metrics")).text + await registry.render()
        stored = stack.store.follow_raw([f"{stack.store.prefix}.>"], until_end=True)
        events = b"\n".join([s.data async for s in stored])
    spans = "\n".join(span.to_json() for span in exporter.get_finished_spans())
    tracing.shutdown()

    assert b"Incorrect API key" in events  # the provider's echo was recorded (redacted)
    assert spans and "threadline_agent" in metrics
    channels = {
        "event log": events.decode(errors="replace"),
        "HTTP bodies": b"\n".join(bodies).decode(errors="replace"),
        "metrics": metrics,
        "spans": spans,
    }
    secrets = {**FAKE_KEYS, "TOOL_TOKEN": TOOL_TOKEN}
    found = [
        f"{label} in the {channel}"
        for channel, text in channels.items()
        for label, value in secrets.items()
        if value in text
    ]
    found += [f"{hit.key} in a log line of {hit.logger}: {hit.line}" for hit in log_lines.hits]
    assert not found, "\n".join(found)
    sizes = ", ".join(f"{channel} {len(text) // 1024} KiB" for channel, text in channels.items())
    figure(
        f"{len(secrets)} secrets x {turns} turns ({len(SCENARIOS)} fault scenarios x "
        f"{len(FAKE_KEYS)} providers) + bad credentials: 0 found in {sizes}, "
        f"{log_lines.lines} log lines"
    )


def test_the_session_scan_sees_log_lines_as_the_services_write_them() -> None:
    """The session-wide scan (tests/conftest.py) is on, and catches a key in a log line
    unless the services' redacting filter would have removed it."""
    assert secret_scan.handler() in logging.getLogger().handlers
    assert logging.getLogger().getEffectiveLevel() <= logging.INFO
    scan = ScanHandler({"tlfake-UNREGISTERED-0001": "loose", "tlfake-REGISTERED-0002": "known"})
    register_secret("tlfake-REGISTERED-0002")
    log = logging.getLogger("threadline.test.secret_scan")
    log.propagate = False  # keep the deliberate leak out of the session's own scan
    log.setLevel(logging.DEBUG)
    log.addHandler(scan)
    try:
        log.debug("keys %s and %s", "tlfake-UNREGISTERED-0001", "tlfake-REGISTERED-0002")
        log.error("failed", exc_info=RuntimeError("with tlfake-UNREGISTERED-0001 inside"))
    finally:
        log.removeHandler(scan)
        log.propagate = True
        log.setLevel(logging.NOTSET)
    assert [hit.key for hit in scan.hits] == ["loose", "loose"]
    assert all("tlfake" not in hit.line.replace("<loose>", "") for hit in scan.hits)


def test_every_long_word_of_a_tool_servers_credential_is_a_secret() -> None:
    """Only a known auth scheme is left out ("Bearer <token>"): a header value whose
    first word is alphabetic once kept that word out of the redactor (and so in debug
    log lines of the HTTP client quoting an invalid header)."""
    forms = secret_forms(["SUPERSECRET\nmore-secret", "Bearer tok-123456", "Token abcdefgh"])
    assert {"SUPERSECRET", "more-secret", "tok-123456", "abcdefgh"} <= forms
    assert not {"Bearer", "Token"} & forms
