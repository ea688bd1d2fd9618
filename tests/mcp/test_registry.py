"""The tool registry against the bundled server, over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from threadline.services.agent.tools import (
    NOT_ALLOWED,
    McpServerConfig,
    ToolContext,
    ToolRegistry,
)

ConfigFactory = Callable[..., McpServerConfig]
ContextFactory = Callable[..., ToolContext]

DEMO_TOOLS = {"echo", "add", "calculate", "now", "notes_add", "notes_list"}
TEST_TOOLS = {"sleep", "fail", "big", "crash"}


async def test_listing_prefixes_every_tool_with_the_server(make_config: ConfigFactory) -> None:
    async with ToolRegistry([make_config()]) as registry:
        listing = await registry.list_tools(["demo"])
    assert listing.unavailable == ()
    names = {spec.name for spec in listing.tools}
    assert names == {f"demo__{tool}" for tool in DEMO_TOOLS | TEST_TOOLS}
    echo = next(spec for spec in listing.tools if spec.name == "demo__echo")
    assert echo.description
    assert echo.parameters["type"] == "object"
    assert "text" in echo.parameters["properties"]


async def test_listing_is_cached(make_config: ConfigFactory) -> None:
    async with ToolRegistry([make_config()], listing_ttl_s=60) as registry:
        first = await registry.list_tools(["demo", "demo"])
        second = await registry.list_tools(["demo"])
    assert first == second
    assert len(first.tools) == len(DEMO_TOOLS | TEST_TOOLS)


async def test_calls_return_text(make_config: ConfigFactory, context: ToolContext) -> None:
    async with ToolRegistry([make_config()]) as registry:
        echo = await registry.call("demo__echo", {"text": "hello  world\n!"}, context=context)
        calc = await registry.call("demo__calculate", {"expression": "(2+3)*4"}, context=context)
        add = await registry.call("demo__add", {"a": 1.5, "b": 2.5}, context=context)
        now = await registry.call("demo__now", {}, context=context)
    assert (echo.content, echo.is_error, echo.server, echo.tool) == (
        "hello  world\n!",
        False,
        "demo",
        "echo",
    )
    assert echo.summary == "hello world !"
    assert echo.duration_ms > 0
    assert (calc.content, calc.is_error) == ("20", False)
    assert add.content == "4"
    assert now.content.endswith("+00:00")


async def test_parallel_calls_share_one_server(
    make_config: ConfigFactory, context: ToolContext
) -> None:
    async with ToolRegistry([make_config()]) as registry:
        await registry.list_tools(["demo"])  # connect first: time only the calls
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(registry.call("demo__sleep", {"seconds": 1}, context=context) for _ in range(6)),
            registry.call("demo__echo", {"text": "meanwhile"}, context=context),
        )
        elapsed = time.monotonic() - started
    assert [o.is_error for o in outcomes] == [False] * 7
    assert outcomes[-1].content == "meanwhile"
    assert elapsed < 5.5, f"six 1 s sleeps took {elapsed:.1f}s: calls were not concurrent"


async def test_notes_are_scoped_to_the_owner_in_metadata(
    make_config: ConfigFactory, make_context: ContextFactory
) -> None:
    alice, bob = make_context(), make_context()
    async with ToolRegistry([make_config()]) as registry:
        added = await registry.call("demo__notes_add", {"text": "alice's secret"}, context=alice)
        bobs = await registry.call("demo__notes_list", {}, context=bob)
        alices = await registry.call("demo__notes_list", {}, context=alice)
    assert (added.is_error, added.content) == (False, "Saved. You have 1 note.")
    assert (bobs.is_error, bobs.content) == (False, "No notes yet.")
    assert alices.content == "1. alice's secret"


async def test_tool_error_is_an_error_outcome(
    make_config: ConfigFactory, context: ToolContext
) -> None:
    async with ToolRegistry([make_config()]) as registry:
        outcome = await registry.call("demo__fail", {"message": "kaboom"}, context=context)
        bad_args = await registry.call("demo__sleep", {"seconds": "soon"}, context=context)
    assert outcome.is_error
    assert "kaboom" in outcome.content
    assert bad_args.is_error


async def test_large_result_is_truncated(make_config: ConfigFactory, context: ToolContext) -> None:
    async with ToolRegistry([make_config()]) as registry:
        outcome = await registry.call("demo__big", {"n_bytes": 1024 * 1024}, context=context)
        small = await registry.call("demo__big", {"n_bytes": 100}, context=context)
    assert not outcome.is_error
    assert len(outcome.content.encode()) < 64 * 1024 + 200
    assert outcome.content.endswith(
        "[truncated: the tool returned 1048576 bytes; only the first 65536 bytes are shown]"
    )
    assert len(outcome.summary) <= 200
    assert "\n" not in outcome.summary
    assert len(small.content) == 100


async def test_result_cap_is_configurable(make_config: ConfigFactory, context: ToolContext) -> None:
    async with ToolRegistry([make_config()], max_result_bytes=10) as registry:
        outcome = await registry.call("demo__echo", {"text": "0123456789abc"}, context=context)
    assert outcome.content.startswith("0123456789\n[truncated: the tool returned 13 bytes")


async def test_disallowed_tools_are_refused_without_calling_the_server(
    make_config: ConfigFactory, make_context: ContextFactory
) -> None:
    config = make_config(allowed_tools=("echo", "notes_list"))
    user = make_context()
    stranger = make_context(owner=user.owner, allowed=("other",))
    async with ToolRegistry([config]) as registry:
        listing = await registry.list_tools(["demo"])
        refused = [
            await registry.call("demo__notes_add", {"text": "injected"}, context=user),
            await registry.call("demo__echo", {"text": "x"}, context=stranger),
            await registry.call("demo__nope", {}, context=user),
            await registry.call("other__echo", {"text": "x"}, context=user),
            await registry.call("echo", {"text": "x"}, context=user),
            await registry.call("demo__", {}, context=user),
        ]
        notes = await registry.call("demo__notes_list", {}, context=user)
    assert {spec.name for spec in listing.tools} == {"demo__echo", "demo__notes_list"}
    assert [(o.is_error, o.content) for o in refused] == [(True, NOT_ALLOWED)] * len(refused)
    assert (notes.is_error, notes.content) == (False, "No notes yet.")


async def test_unknown_tool_is_refused_before_any_call(
    make_config: ConfigFactory, context: ToolContext
) -> None:
    async with ToolRegistry([make_config()]) as registry:
        outcome = await registry.call("demo__rm_rf", {}, context=context)
    assert (outcome.is_error, outcome.content, outcome.tool) == (True, NOT_ALLOWED, "rm_rf")
