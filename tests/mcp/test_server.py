"""The bundled server's own options: notes on disk, hiding the test tools, owner checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

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
