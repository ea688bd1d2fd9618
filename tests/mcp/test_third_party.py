"""The tool registry against MCP servers others wrote (see third_party.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path

from tests.mcp.conftest import make_context
from tests.mcp.third_party import (
    SDK1_SERVER,
    free_port,
    npm_bin,
    run_http,
    sdk1_python,
    time_server,
)
from threadline.services.agent.tools import NOT_ALLOWED, McpServerConfig, ToolOutcome, ToolRegistry

__all__ = ["npm_bin", "sdk1_python", "time_server"]  # fixtures


def everything_stdio(npm_bin: Path) -> McpServerConfig:
    return McpServerConfig(
        name="everything", transport="stdio", command=[str(npm_bin / "mcp-server-everything")]
    )


async def test_tools_that_require_task_mode_are_not_offered(npm_bin: Path) -> None:
    async with ToolRegistry([everything_stdio(npm_bin)]) as registry:
        listing = await registry.list_tools(["everything"])
        names = {spec.name for spec in listing.tools}
        context = make_context(allowed=("everything",))
        outcome = await registry.call(
            "everything__simulate-research-query", {"topic": "x"}, context=context
        )
    assert "everything__trigger-long-running-operation" in names
    assert "everything__echo" in names
    assert "everything__simulate-research-query" not in names
    assert (outcome.is_error, outcome.content) == (True, NOT_ALLOWED)


async def test_mcp_server_time_answers_once_and_refuses_bad_input(time_server: str) -> None:
    config = McpServerConfig(name="time", transport="stdio", command=[time_server])
    context = make_context(allowed=("time",))
    async with ToolRegistry([config]) as registry:
        listing = await registry.list_tools(["time"])
        now = await registry.call("time__get_current_time", {"timezone": "UTC"}, context=context)
        bad = await registry.call(
            "time__get_current_time", {"timezone": "Mars/Olympus"}, context=context
        )
    assert {spec.name for spec in listing.tools} == {"time__get_current_time", "time__convert_time"}
    assert not now.is_error
    assert json.loads(now.content)["timezone"] == "UTC"  # one JSON document: given once
    assert bad.is_error and "Mars/Olympus" in bad.content


async def test_server_memory_structured_results_reach_the_model_once(
    npm_bin: Path, tmp_path: Path
) -> None:
    config = McpServerConfig(
        name="memory",
        transport="stdio",
        command=[str(npm_bin / "mcp-server-memory")],
        env={"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl")},
    )
    entity = {"name": "Ada", "entityType": "person", "observations": ["wrote programs"]}
    context = make_context(allowed=("memory",))
    async with ToolRegistry([config]) as registry:
        created = await registry.call(
            "memory__create_entities", {"entities": [entity]}, context=context
        )
        graph = await registry.call("memory__read_graph", {}, context=context)
    assert not created.is_error and json.loads(created.content) == [entity]
    assert not graph.is_error and json.loads(graph.content) == {
        "entities": [entity],
        "relations": [],
    }


async def test_an_sdk1_structured_result_reaches_the_model_once(sdk1_python: str) -> None:
    config = McpServerConfig(
        name="sdk1", transport="stdio", command=[sdk1_python, str(SDK1_SERVER), "stdio"]
    )
    context = make_context(allowed=("sdk1",))
    async with ToolRegistry([config]) as registry:
        number = await registry.call("sdk1__answer", {}, context=context)
        mapping = await registry.call("sdk1__pair", {}, context=context)
        text = await registry.call("sdk1__steps", {"count": 0}, context=context)
    assert (number.is_error, number.content) == (False, "42")
    assert (text.is_error, text.content) == (False, "0 steps done")
    assert (mapping.is_error, mapping.content) == (False, '{\n  "a": 1,\n  "b": 2\n}')


async def _call_across_a_restart(
    command: list[str | Path], port: int, ready: str, tool: str, **env: str
) -> list[ToolOutcome]:
    """A call before the server restarts, and two after."""
    config = McpServerConfig(name="remote", transport="http", url=f"http://127.0.0.1:{port}/mcp")
    context = make_context(allowed=("remote",))
    arguments = {"a": 1, "b": 2} if tool == "get-sum" else {}
    async with ToolRegistry([config]) as registry:
        async with run_http(command, port, ready, env=env):
            before = await registry.call(f"remote__{tool}", arguments, context=context)
        async with run_http(command, port, ready, env=env):
            after = await registry.call(f"remote__{tool}", arguments, context=context)
            again = await registry.call(f"remote__{tool}", arguments, context=context)
    return [before, after, again]


async def test_an_sdk1_http_server_that_restarted_gets_a_new_session(sdk1_python: str) -> None:
    port = free_port()
    command: list[str | Path] = [sdk1_python, SDK1_SERVER, "http", str(port)]
    outcomes = await _call_across_a_restart(command, port, "Uvicorn running", "answer")
    assert [(o.is_error, o.content) for o in outcomes] == [(False, "42")] * 3


async def test_server_everything_over_http_restarted_gets_a_new_session(npm_bin: Path) -> None:
    port = free_port()
    command: list[str | Path] = [npm_bin / "mcp-server-everything", "streamableHttp"]
    outcomes = await _call_across_a_restart(
        command, port, "listening on port", "get-sum", PORT=str(port)
    )
    assert [(o.is_error, o.content) for o in outcomes] == [(False, "The sum of 1 and 2 is 3.")] * 3


async def test_a_call_cut_off_by_a_restart_is_not_sent_again(npm_bin: Path) -> None:
    """Only a request the server refused for want of the session is sent again: one it
    was running when it went away may have had effects, so it is reported, not rerun."""
    port = free_port()
    command: list[str | Path] = [npm_bin / "mcp-server-everything", "streamableHttp"]
    config = McpServerConfig(name="remote", transport="http", url=f"http://127.0.0.1:{port}/mcp")
    running = asyncio.Event()

    async def progress(done: float, total: float | None, message: str) -> None:
        running.set()

    async with ToolRegistry([config]) as registry:
        async with run_http(command, port, "listening on port", env={"PORT": str(port)}):
            call = asyncio.create_task(
                registry.call(
                    "remote__trigger-long-running-operation", {"duration": 2, "steps": 4},
                    context=make_context(allowed=("remote",)), progress=progress,
                )
            )  # fmt: skip
            await running.wait()
        async with run_http(command, port, "listening on port", env={"PORT": str(port)}):
            outcome = await call
    assert outcome.is_error, outcome.content  # reported, not run again on the new server


async def test_progress_is_requested_and_passed_on_throttled(npm_bin: Path) -> None:
    told: list[tuple[float, float | None, str, float]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        told.append((done, total, message, time.monotonic()))

    async with ToolRegistry([everything_stdio(npm_bin)], progress_interval_s=0.5) as registry:
        outcome = await registry.call(
            "everything__trigger-long-running-operation",
            {"duration": 2, "steps": 20},  # a notification every 0.1 s
            context=make_context(allowed=("everything",)),
            progress=progress,
        )
    assert not outcome.is_error, outcome.content
    assert told[0][:3] == (1, 20, "")
    # 20 reported over 2 s (or more on a busy machine), at most one per 0.5 s passed on
    assert 3 <= len(told) <= outcome.duration_ms / 500 + 1
    assert all(b[3] - a[3] >= 0.5 for a, b in itertools.pairwise(told))
    assert [t[0] for t in told] == sorted(t[0] for t in told)


async def test_sdk1_progress_messages_are_passed_on(sdk1_python: str) -> None:
    config = McpServerConfig(
        name="sdk1", transport="stdio", command=[sdk1_python, str(SDK1_SERVER), "stdio"]
    )
    told: list[tuple[float, float | None, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        told.append((done, total, message))

    async with ToolRegistry([config]) as registry:
        outcome = await registry.call(
            "sdk1__steps", {"count": 3}, context=make_context(allowed=("sdk1",)), progress=progress
        )
    assert (outcome.is_error, outcome.content) == (False, "3 steps done")
    assert told == [(1, 3, "step 1")]  # the others came within the second
