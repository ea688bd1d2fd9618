"""API keys never reach the log, an event or a log line — even when a provider echoes them."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.conftest import Harness
from threadline.base.config import Settings
from threadline.base.redact import default_redactor
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted
from threadline.events.store import NewEvent
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings

# Recognisable, and deliberately awkward: short, regex metacharacters, not key-shaped.
KEYS = {
    "OPENAI_COMPAT_KEY": "sk-test-THREADLINE-Secret-0001",
    "ODD_KEY": "k+y.(7)*z",
    "SHORT_KEY": "x9Q2v7Lm",
}
SCENARIOS = [
    "[[fail:401]] hello",
    "[[fail:429 retry-after=0.01 times=1]] hello",
    "[[fail:500]] hello",
    "[[drop:after=1]] hello",
    "[[stall:2000]] hello",
    "[[fail:400-notools]] hello",
    "plain hello",
]


@pytest.fixture
async def keyed(
    js_store: JetStreamEventStore, devmodel_url: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    providers = {
        name.lower().removesuffix("_key"): {
            "api": "openai",
            "base_url": f"{devmodel_url}/v1",
            "key_env": name,
            "models": ["threadline-dev"],
            "default_model": "threadline-dev",
            "timeout_s": 0.5,
        }
        for name in KEYS
    }
    settings = Settings(
        data_dir=str(tmp_path),
        providers=providers,
        mcp_servers={
            "threadline": {
                "transport": "stdio",
                "command": [sys.executable, "-m", "threadline.services.mcpserver"],
                "headers": {},
                "env": {"THREADLINE_TOOL_TOKEN": "tool-secret-Zq81"},
            }
        },
    )
    agent = AgentSettings(worker="s", retry_base_s=0.01, max_retries=1, max_attempts=2)
    async with serve_agent(
        settings, js_store, devmodel_url=devmodel_url, agent=agent, env=KEYS, ack_wait_s=5
    ):
        yield Harness(js_store)


async def test_no_key_in_events_or_logs(keyed: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for handler in logging.getLogger().handlers:
        handler.addFilter(default_redactor().log_filter())
    n = 0
    for provider in ("openai_compat", "odd", "short"):
        for text in SCENARIOS:
            n += 1
            session = f"sec{n}"
            await keyed.store.append(
                session,
                NewEvent(
                    event=SessionStarted(owner="o", provider=provider, tool_servers=("threadline",))
                ),
            )
            await keyed.say(session, text, "t1")
            await keyed.until_terminal(session, "t1")
    store = keyed.store
    stored = store.follow_raw([f"{store.prefix}.>"], until_end=True)
    everything = b"\n".join([s.data async for s in stored])
    assert b"Incorrect API key" in everything  # the provider's echo really was recorded...
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in [*KEYS.values(), "tool-secret-Zq81"]:
        assert secret.encode() not in everything, f"{secret} leaked into the event log"
        assert secret not in logs, f"{secret} leaked into a log line"
