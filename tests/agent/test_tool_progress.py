"""A long tool call's progress reaches the log (and so every client) as tool_progress
events, throttled: the real agent, dev model and nats-server, and server-everything's
long-running operation over stdio (installed by tests/mcp/third_party.py)."""

from __future__ import annotations

from pathlib import Path

from tests.agent.conftest import Harness
from tests.mcp.third_party import npm_bin
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted, ToolProgress, ToolResult
from threadline.events.store import NewEvent
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings

__all__ = ["npm_bin"]  # a fixture


async def test_a_long_tool_call_records_its_progress_throttled(
    js_store: JetStreamEventStore, devmodel_url: str, tmp_path: Path, npm_bin: Path
) -> None:
    command = [str(npm_bin / "mcp-server-everything")]
    settings = Settings(
        data_dir=str(tmp_path),
        mcp_servers={"everything": {"transport": "stdio", "command": command}},
    )
    agent = AgentSettings(worker="progress", retry_base_s=0.01, delta_window_s=0.005)
    started = SessionStarted(owner="alice", provider="dev", tool_servers=("everything",))
    await js_store.append("progress", NewEvent(event=started), expected_version=0)
    harness = Harness(js_store)
    # 30 notifications, one every 0.1 s
    ask = '[[tool:trigger-long-running-operation {"duration": 3, "steps": 30}]]'
    async with serve_agent(settings, js_store, devmodel_url=devmodel_url, agent=agent, env={}):
        await harness.say("progress", ask, "t1")
        records = await harness.until_terminal("progress", "t1")
    assert records[-1].kind == "turn_completed"
    progress = [r for r in records if isinstance(r.event, ToolProgress)]
    [result] = [r for r in records if isinstance(r.event, ToolResult)]
    assert not result.event.is_error, result.event.content
    # 30 reported over 3 s (or more on a busy machine), at most one a second recorded
    assert 2 <= len(progress) <= result.event.duration_ms / 1000 + 1
    assert all(r.event.call_id == result.event.call_id and r.event.total == 30 for r in progress)
    assert all(r.version < result.version for r in progress)
    assert [r.event.progress for r in progress] == sorted(r.event.progress for r in progress)
