"""An agent worker against the real dev model, a real nats-server and the bundled MCP server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import (
    TERMINAL_KINDS,
    GenerationParams,
    SessionStarted,
    UserMessage,
)
from threadline.events.store import NewEvent, Recorded
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings
from threadline.services.devmodel import DevModelSettings, serve


@dataclass
class Harness:
    store: JetStreamEventStore

    async def start(
        self,
        session: str,
        *,
        provider: str = "dev",
        tools: bool = True,
        params: GenerationParams | None = None,
    ) -> None:
        event = SessionStarted(
            owner="alice",
            provider=provider,
            tool_servers=("threadline",) if tools else (),
            params=params or GenerationParams(),
        )
        await self.store.append(session, NewEvent(event=event), expected_version=0)

    async def say(self, session: str, text: str, turn: str) -> None:
        await self.store.append(session, NewEvent(event=UserMessage(text=text), turn=turn))

    async def until_terminal(self, session: str, turn: str, wait_s: float = 30) -> list[Recorded]:
        """Every event of ``turn`` up to and including its terminal event."""
        out: list[Recorded] = []
        async with asyncio.timeout(wait_s):
            async for rec in self.store.follow(session):
                if rec.turn == turn and rec.kind != "user_message":
                    out.append(rec)
                    if rec.kind in TERMINAL_KINDS:
                        return out
        raise AssertionError("unreachable")


@pytest.fixture
async def devmodel_url() -> AsyncIterator[str]:
    async with serve(DevModelSettings.fast()) as url:
        yield url


def agent_settings_for(tmp_path_str: str) -> Settings:
    return Settings(
        data_dir=tmp_path_str,
        mcp_servers={
            "threadline": {
                "transport": "stdio",
                "command": [sys.executable, "-m", "threadline.services.mcpserver"],
                "call_timeout_s": 5,
            }
        },
    )


@pytest.fixture
async def harness(
    js_store: JetStreamEventStore, devmodel_url: str, tmp_path: object
) -> AsyncIterator[Harness]:
    settings = agent_settings_for(str(tmp_path))
    agent = AgentSettings(worker="test", retry_base_s=0.01, delta_window_s=0.005)
    async with serve_agent(
        settings, js_store, devmodel_url=devmodel_url, agent=agent, env={}, ack_wait_s=5
    ):
        yield Harness(js_store)
