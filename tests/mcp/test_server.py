"""The bundled server's own options: notes on disk, hiding the test tools, owner checks."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from threadline.services.agent.tools import McpServerConfig, ToolContext, ToolRegistry
from threadline.services.mcpserver.main import main

ConfigFactory = Callable[..., McpServerConfig]


async def test_notes_persist_in_the_data_dir(
    stdio_config: ConfigFactory, context: ToolContext, tmp_path: Path
) -> None:
    config = stdio_config(args=("--data-dir", str(tmp_path)))
    async with ToolRegistry([config]) as registry:
        await registry.call("demo__notes_add", {"text": "buy milk"}, context=context)
    stored = json.loads((tmp_path / "notes.json").read_text())
    assert [note["text"] for note in stored["owners"][context.owner]] == ["buy milk"]
    async with ToolRegistry([config]) as registry:  # a new process reads the file
        listed = await registry.call("demo__notes_list", {}, context=context)
    assert listed.content == "1. buy milk"


async def test_two_servers_share_the_notes_file(
    stdio_config: ConfigFactory, context: ToolContext, tmp_path: Path
) -> None:
    """``threadline up`` runs one agent (so one stdio server) per core over one data dir:
    a note added through one process is listed by the other, and adds racing from both
    processes all land (each change is a locked read-modify-write of the file)."""
    config = stdio_config(args=("--data-dir", str(tmp_path)))
    async with ToolRegistry([config]) as first, ToolRegistry([config]) as second:
        await first.call("demo__notes_list", {}, context=context)  # both servers running
        await second.call("demo__notes_list", {}, context=context)
        await first.call("demo__notes_add", {"text": "from the first"}, context=context)
        listed = await second.call("demo__notes_list", {}, context=context)
        assert listed.content == "1. from the first"
        async with anyio.create_task_group() as tg:
            for i in range(10):
                registry = first if i % 2 else second
                add = functools.partial(registry.call, context=context)
                tg.start_soon(add, "demo__notes_add", {"text": f"n{i}"})
    stored = json.loads((tmp_path / "notes.json").read_text())
    texts = [note["text"] for note in stored["owners"][context.owner]]
    assert sorted(texts) == sorted(["from the first", *(f"n{i}" for i in range(10))])


async def test_test_tools_can_be_hidden(stdio_config: ConfigFactory) -> None:
    async with ToolRegistry([stdio_config(args=("--no-test-tools",))]) as registry:
        listing = await registry.list_tools(["demo"])
    assert {spec.name for spec in listing.tools} == {
        "demo__echo",
        "demo__add",
        "demo__calculate",
        "demo__now",
        "demo__notes_add",
        "demo__notes_list",
    }


async def test_notes_need_an_owner(
    stdio_config: ConfigFactory, make_context: Callable[..., ToolContext]
) -> None:
    nobody = make_context(owner="")
    async with ToolRegistry([stdio_config()]) as registry:
        outcome = await registry.call("demo__notes_add", {"text": "x"}, context=nobody)
    assert outcome.is_error
    assert "threadline/owner" in outcome.content


def test_main_rejects_unknown_transport(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--transport", "carrier-pigeon"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
