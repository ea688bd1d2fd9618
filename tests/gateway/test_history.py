"""A session's history over HTTP: one reader, the fold of the log, whichever gateway
answers; the sessions list and usage from the projections; read-your-writes, as-of,
isolation.

Two gateways share one store: ``pair.views`` lists sessions and usage from the
projections (the projector runs in-process, as in ``threadline up``), ``pair.log``
lists them from the log. ``GET /v1/sessions/{id}`` answers the same bytes on both.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from tests.gateway.harness import Harness, gateway_options, make_jwt
from tests.gateway.views_harness import Pair, log_of, running_views_gateway, views_settings
from tests.projections.helpers import agent, rich_session, started, tokens, user
from threadline.events.schema import (
    AssistantMessage,
    Fallback,
    SessionStarted,
    TextDelta,
    ToolCall,
    ToolCallRef,
    ToolResult,
    TurnCompleted,
    Usage,
)
from threadline.events.store import NewEvent
from threadline.projections import ProjectionReader
from threadline.projections.config import ProjectorConfig
from threadline.services.gateway import create_app, serve_app
from threadline.services.gateway.projection_history import ProjectionHistory
from threadline.services.runtime.natsserver import EmbeddedNats

Json = dict[str, Any]


@pytest_asyncio.fixture(scope="module")
async def pair(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pair]:
    async with running_views_gateway(nats_server.url, tmp_path_factory.mktemp("views")) as pair:
        yield pair


async def both(pair: Pair, token: str, path: str, **params: Any) -> tuple[Json, Json]:
    views = await pair.views.client(token).get(path, params=params)
    log = await log_of(pair).client(token).get(path, params=params)
    assert views.status_code == log.status_code == 200, (views.text, log.text)
    return views.json(), log.json()


async def one_reader(pair: Pair, token: str, path: str, **params: Any) -> Json:
    """The session from both gateways: byte-identical JSON."""
    views = await pair.views.client(token).get(path, params=params)
    log = await log_of(pair).client(token).get(path, params=params)
    assert views.status_code == log.status_code == 200, (views.text, log.text)
    assert views.content == log.content
    detail: Json = views.json()
    return detail


async def test_one_reader_for_tools_retries_fallbacks_failures_and_cancels(pair: Pair) -> None:
    """Tool calls, a superseded attempt with a provider switch, a failure after a fallback,
    a cancelled turn with partial text."""
    recs = await pair.views.store.append("rich-1", rich_session("alice", title="Weather"))
    path, wait = "/v1/sessions/rich-1", recs[-1].position
    views = await one_reader(pair, "alice-token", path, wait_for=wait)
    turns = {t["turn_id"]: t for t in views["turns"]}
    assert turns["t1"]["usage"]["input_tokens"] == 30 and turns["t1"]["ttft_ms"] == 400
    assert (turns["t2"]["attempt"], turns["t2"]["provider"]) == (2, "anthropic")
    assert [f["fallback"] for f in turns["t2"]["fallbacks"]] == ["provider_switched"]
    assert turns["t3"]["error"] == "rate limited; retry after 20 s"
    assert turns["t4"]["status"] == "cancelled" and turns["t4"]["cancel_requested"]
    texts = [(m["role"], m["text"]) for m in views["messages"]]
    assert ("assistant", "Why did the") not in texts  # the superseded attempt's step
    assert texts[1:3] == [("assistant", "Let me check."), ("tool", "18C, sunny")]
    assert views["messages"][1]["tool_calls"] == [
        {"call_id": "c1", "tool": "forecast", "arguments": {"city": "Paris"}}
    ]
    tool = views["messages"][2]
    assert (tool["duration_ms"], tool["position"]) == (120, recs[7].position)  # full detail
    last = views["messages"][-1]
    assert (last["text"], last["finish_reason"], last["usage"]) == ("Once upon", "cancelled", None)


async def test_every_intermediate_state_is_read_alike(pair: Pair) -> None:
    """Sessions holding the first 1..28 events of the rich one: pending and running turns
    (partial text of the current step, a superseded attempt), a cancel requested..."""
    events = rich_session("alice")
    last = 0
    for n in range(1, len(events) + 1):
        last = (await pair.views.store.append(f"prefix-{n}", events[:n]))[-1].position
    for n in range(1, len(events) + 1):
        await one_reader(pair, "alice-token", f"/v1/sessions/prefix-{n}", wait_for=last)
    running = (await pair.views.alice.get("/v1/sessions/prefix-14")).json()
    assert running["in_flight"] == "t2" and running["turns"][1]["partial_text"] == "Why"
    assert (await pair.views.alice.get("/v1/sessions/prefix-16")).json()["turns"][1] == {
        **running["turns"][1], "attempt": 2, "provider": "anthropic", "model": "claude-x",
        "partial_text": "",
    }  # fmt: skip


async def test_a_superseded_attempts_fallbacks_and_steps_are_dropped(pair: Pair) -> None:
    """docs/events.md: everything of a superseded attempt goes, its fallbacks included;
    the counting attempt's tool call, result and answer stay."""
    call = ToolCallRef(call_id="c2", tool="srv__add", arguments={"a": 1})
    recs = await pair.views.store.append(
        "retried-1",
        [
            NewEvent(event=SessionStarted(owner="alice"), actor="user:alice"),
            user("add one", "t1"),
            started("t1"),
            agent(Fallback(fallback="tools_disabled", reason="no tools"), "t1"),
            agent(AssistantMessage(text="Thinking", usage=tokens(3, 1)), "t1"),
            agent(Fallback(fallback="retry", reason="stream dropped", attempt=2), "t1"),
            started("t1", 2, provider="anthropic", model="claude-x"),
            agent(Fallback(fallback="provider_switched", reason="429", to="b"), "t1", 2),
            agent(ToolCall(call_id="c2", tool="srv__add", arguments={"a": 1}), "t1", 2),
            agent(AssistantMessage(text="", finish_reason="tool_calls"), "t1", 2),
            agent(ToolResult(call_id="c2", tool="srv__add", content="2"), "t1", 2),
            agent(AssistantMessage(text="It is 2.", step=1), "t1", 2),
            agent(TurnCompleted(usage=tokens(7, 2), ttft_ms=5.0, duration_ms=9.0), "t1", 2),
        ],
    )
    detail = await one_reader(
        pair, "alice-token", "/v1/sessions/retried-1", wait_for=recs[-1].position
    )
    (turn,) = detail["turns"]
    assert (turn["attempt"], turn["provider"], turn["status"]) == (2, "anthropic", "completed")
    assert [f["fallback"] for f in turn["fallbacks"]] == ["provider_switched"]
    assert turn["usage"]["input_tokens"] == 7 and (turn["ttft_ms"], turn["duration_ms"]) == (5, 9)
    said = [(m["role"], m["text"]) for m in detail["messages"]]
    assert said == [
        ("user", "add one"),
        ("assistant", ""),
        ("tool", "2"),
        ("assistant", "It is 2."),
    ]
    assert detail["messages"][1]["tool_calls"] == [msgspec.to_builtins(call)]  # from the call
    assert [m["version"] for m in detail["messages"]] == [2, 10, 11, 12]
    assert (detail["created_at"], detail["updated_at"]) == (
        recs[0].envelope.at, recs[-1].envelope.at,
    )  # fmt: skip


async def test_settings_tokens_and_full_tool_results(pair: Pair) -> None:
    body = {
        "title": "Settings", "provider": "openai", "model": "gpt-4.1", "system_prompt": "Be brief.",
        "tool_servers": ["demo"], "params": {"temperature": 0.5, "max_steps": 3},
    }  # fmt: skip
    created = (await pair.views.alice.post("/v1/sessions", json=body)).json()
    session = created["id"]
    big = Usage(input_tokens=9, output_tokens=4, reasoning_tokens=2, cached_input_tokens=7)
    call = ToolCallRef(call_id="c9", tool="demo__lines", arguments={"n": 2})
    calls = ToolCall(call_id="c9", tool="demo__lines", server="demo", arguments={"n": 2})
    asks = AssistantMessage(text="", finish_reason="tool_calls", tool_calls=(call,), usage=big)
    result = ToolResult(call_id="c9", tool="demo__lines", content="one\ntwo", summary="one two")
    await pair.views.store.append(
        session,
        [
            user("two lines please", "t1"),
            started("t1"),
            agent(calls, "t1"),
            agent(asks, "t1"),
            agent(result, "t1"),
            agent(AssistantMessage(text="Done.", step=1, usage=big), "t1"),
            agent(TurnCompleted(usage=big, ttft_ms=10.0, duration_ms=20.0, steps=2), "t1"),
            user("and now?", "t2"),
            started("t2"),
            agent(TextDelta(text="Work"), "t2"),
        ],
    )
    head = await pair.views.store.head(session)
    path = f"/v1/sessions/{session}"
    views = await one_reader(pair, "alice-token", path, wait_for=head.position)
    assert (views["system_prompt"], views["tool_servers"]) == ("Be brief.", ["demo"])
    given = {name: value for name, value in views["params"].items() if value is not None}
    assert given == {"temperature": 0.5, "max_steps": 3}
    assert views["turns"][0]["usage"] == msgspec.to_builtins(big)  # from turn_completed
    assert views["in_flight"] == "t2" and views["turns"][1]["partial_text"] == "Work"
    steps = [m for m in views["messages"] if m["role"] == "assistant"]
    assert steps[0]["usage"] == msgspec.to_builtins(big)  # every kind of token, per step
    tool = [m for m in views["messages"] if m["role"] == "tool"]
    stored = await pair.views.store.load(session)
    assert [(m["text"], m["position"]) for m in tool] == [("one\ntwo", stored[5].position)]


async def test_the_sessions_list_from_the_views(pair: Pair) -> None:
    dora = make_jwt("dora")
    made = [await pair.views.new_session(pair.views.client(dora), title=f"d{i}") for i in range(5)]
    last = (await pair.views.store.head(made[-1])).position
    views, log = await both(pair, dora, "/v1/sessions", wait_for=last, limit=2)
    assert [s["id"] for s in views["sessions"]] == made[::-1][:2]
    assert views == {**log, "sessions": [{**s, "position": 0} for s in log["sessions"]]}
    seen, cursor = [], views["next_cursor"]
    while cursor:  # a cursor from the views pages the log's reader too: same format
        page = (
            await log_of(pair).client(dora).get("/v1/sessions", params={"cursor": cursor})
        ).json()
        seen += [s["id"] for s in page["sessions"]]
        cursor = page["next_cursor"]
    assert seen == made[::-1][2:]


async def test_wait_for_reads_your_writes(pair: Pair) -> None:
    client = pair.views.client(make_jwt("ryw"))
    created = (await client.post("/v1/sessions", json={"title": "ryw"})).json()
    listed = (await client.get("/v1/sessions", params={"wait_for": created["position"]})).json()
    assert [s["id"] for s in listed["sessions"]] == [created["id"]]
    url = f"/v1/sessions/{created['id']}"
    for i in range(20):
        posted = (await client.post(f"{url}/messages", json={"text": f"m{i}"})).json()
        detail = (await client.get(url, params={"wait_for": posted["position"]})).json()
        assert detail["messages"][-1]["text"] == f"m{i}"
        assert detail["pending"][-1] == posted["turn_id"] and detail["version"] >= posted["version"]
    future = await pair.views.store.last_position() + 1000
    late = await client.get(url, params={"wait_for": future})
    assert late.status_code == 409 and late.json()["error"]["type"] == "not_caught_up"


async def test_sessions_are_read_from_the_log_whatever_the_views_hold(
    pair: Pair, tmp_path: Path
) -> None:
    """A gateway over views no projector writes to lists nothing, yet reads every session
    in full: a session never comes from the views."""
    await pair.views.store.append("unseen-1", rich_session("alice"))
    config = ProjectorConfig(sqlite_path=str(tmp_path / "empty.sqlite3"))
    recorder = await asyncio.to_thread(config.open)  # views no projector writes to
    history = ProjectionHistory(ProjectionReader(recorder))
    app = create_app(
        views_settings(tmp_path), pair.views.store, options=gateway_options(), history=history
    )
    try:
        async with serve_app(app) as url:
            stale = Harness(url, app, pair.views.store)
            read = await stale.alice.get("/v1/sessions/unseen-1")
            expected = await log_of(pair).alice.get("/v1/sessions/unseen-1")
            assert read.status_code == 200 and read.content == expected.content
            assert (await stale.alice.get("/v1/sessions")).json()["sessions"] == []
            assert (await stale.alice.get("/v1/sessions/never-1")).status_code == 404
            for client in stale.clients.values():
                await client.aclose()
    finally:
        await asyncio.to_thread(recorder.close)


async def test_as_of_a_version_is_the_fold_of_the_log(pair: Pair) -> None:
    await pair.views.store.append("asof-1", rich_session("alice"))
    for version in (1, 2, 5, 9, 14, 19, 27, 28):
        views = await one_reader(pair, "alice-token", "/v1/sessions/asof-1", at=version)
        assert views["version"] == version
    running = (await pair.views.alice.get("/v1/sessions/asof-1", params={"at": 14})).json()
    assert running["in_flight"] == "t2" and running["turns"][1]["partial_text"] == "Why"
    beyond = await pair.views.alice.get("/v1/sessions/asof-1", params={"at": 29})
    assert beyond.status_code == 404 and beyond.json()["error"]["type"] == "version_not_found"


def utc_day(at_us: int) -> str:
    return datetime.datetime.fromtimestamp(at_us / 1e6, datetime.UTC).date().isoformat()


async def test_usage_is_the_callers_from_the_usage_view(pair: Pair) -> None:
    uma = pair.views.client(make_jwt("uma"))
    recs = await pair.views.store.append("usage-1", rich_session("uma"))
    day = utc_day(recs[2].envelope.at)  # the day t1 started
    response = await uma.get("/v1/usage", params={"day": day, "wait_for": recs[-1].position})
    assert response.status_code == 200, response.text
    report = response.json()
    expected = await pair.projector.reader.usage("uma", day)
    assert report == msgspec.to_builtins(expected)
    assert report["turns"] == 4 and report["input_tokens"] == 30 + 5 + 0 + 0
    models = {(r["provider"], r["model"]): r["turns"] for r in report["rows"]}
    assert models == {("anthropic", "claude-x"): 1, ("openai", "gpt-x"): 3}
    every_day = (await uma.get("/v1/usage")).json()
    assert every_day["day"] is None and every_day["turns"] == 4
    assert (await pair.views.client(make_jwt("nobody")).get("/v1/usage")).json()["rows"] == []
    bad = await uma.get("/v1/usage", params={"day": "2026-13-45"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "day"
    assert (await uma.get("/v1/usage", params={"day": "yesterday"})).status_code == 422
    from_log = await log_of(pair).client(make_jwt("uma")).get("/v1/usage")
    assert from_log.status_code == 501 and from_log.json()["error"]["type"] == "not_implemented"


async def test_reads_from_the_views_are_owner_scoped(pair: Pair) -> None:
    recs = await pair.views.store.append("mine-1", rich_session("alice"))
    wait = {"wait_for": recs[-1].position}
    theirs = await pair.views.bob.get("/v1/sessions/mine-1", params=wait)
    unknown = await pair.views.bob.get("/v1/sessions/nope-1", params=wait)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.content == unknown.content
    as_of = await pair.views.bob.get("/v1/sessions/mine-1", params={"at": 3})
    assert as_of.status_code == 404 and as_of.content == unknown.content
    listed = (await pair.views.bob.get("/v1/sessions", params={**wait, "limit": 200})).json()
    assert "mine-1" not in {s["id"] for s in listed["sessions"]}
    assert (await pair.views.root.get("/v1/sessions/mine-1", params=wait)).status_code == 200
