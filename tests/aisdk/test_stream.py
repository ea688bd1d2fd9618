"""The UI message stream of a turn with a hand-driven agent: live, resumed after a
position, interrupted, capped per owner."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.aisdk.test_usechat import body, chat_id, frames, user
from tests.gateway.harness import agent_turn, gateway_options, running_gateway
from threadline.events.schema import AssistantMessage, TurnCompleted, UserMessage
from threadline.events.store import NewEvent
from threadline.services.runtime.natsserver import EmbeddedNats


@contextlib.asynccontextmanager
async def posted(client: httpx.AsyncClient, chat: str, text: str = "hi") -> AsyncIterator[Any]:
    """POST /api/chat; yields (response, turn id from the ``start`` chunk)."""
    async with client.stream("POST", "/api/chat", json=body(chat, user(text))) as resp:
        assert resp.status_code == 200, (await resp.aread()).decode()
        chunks = frames(resp)
        _, first = await anext(chunks)
        start = json.loads(first)
        assert start["type"] == "start"
        yield resp, start["messageId"], chunks


async def test_a_hand_driven_turn_streams_live(nats_server: EmbeddedNats) -> None:
    async with running_gateway(nats_server.url) as gw:
        chat = chat_id()
        session = gw.gateway.commands.ids.chat("alice", chat)
        async with posted(gw.alice, chat) as (_, turn, chunks):
            recs = await agent_turn(gw.store, session, turn, tool=True)
            seen = []
            async for position, data in chunks:
                if data == "[DONE]":
                    break
                seen.append((position, json.loads(data)))
    assert [c["type"] for _, c in seen] == [
        "start-step", "tool-input-start", "tool-input-available", "tool-output-available",
        "finish-step", "start-step", "text-start", "text-delta", "text-delta", "text-delta",
        "text-end", "finish-step", "finish",
    ]  # fmt: skip
    ids = [p for p, _ in seen if p is not None]
    stored = {r.position for r in recs}
    assert ids == sorted(set(ids)) and set(ids) <= stored and ids[-1] == recs[-1].position


async def test_resume_after_a_position_sends_only_the_rest(nats_server: EmbeddedNats) -> None:
    async with running_gateway(nats_server.url) as gw:
        chat = chat_id()
        session = gw.gateway.commands.ids.chat("alice", chat)
        async with posted(gw.alice, chat) as (_, turn, _chunks):
            pass  # the client went away; the turn goes on
        recs = await agent_turn(gw.store, session, turn, end=False)  # started, Hel, lo, !
        lo = recs[2].position
        headers = {"Last-Event-ID": str(lo)}
        async with gw.alice.stream("GET", f"/api/chat/{chat}/stream", headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
            chunks = frames(resp)
            assert json.loads((await anext(chunks))[1]) == {"type": "start", "messageId": turn}
            position, data = await anext(chunks)
            assert position == recs[3].position
            assert json.loads(data) == {"type": "text-delta", "id": "text-1-0-1", "delta": "!"}
            end = [AssistantMessage(text="Hello!"), TurnCompleted()]
            await gw.store.append(
                session,
                [
                    NewEvent(event=e, turn=turn, attempt=1, key=f"{turn}/end/{n}")
                    for n, e in enumerate(end)
                ],
            )
            rest = [json.loads(d) async for _, d in chunks if d != "[DONE]"]
        assert [c["type"] for c in rest] == ["text-end", "finish-step", "finish"]
        # the turn has ended: nothing to resume
        async with gw.alice.stream("GET", f"/api/chat/{chat}/stream") as resp:
            assert resp.status_code == 204


async def test_an_interrupted_stream_says_so(nats_server: EmbeddedNats) -> None:
    options = gateway_options(max_stream_s=0.4, heartbeat_s=0.1)
    async with (
        running_gateway(nats_server.url, options) as gw,
        gw.alice.stream("POST", "/api/chat", json=body(chat_id(), user("hi"))) as resp,
    ):
        lines = [line async for line in resp.aiter_lines()]
    assert ": ping" in lines  # no agent: the turn never starts, heartbeats keep it open
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert data[0]["type"] == "start" and data[-1]["type"] == "error"
    assert "interrupted" in data[-1]["errorText"] and "data: [DONE]" not in lines


async def test_streams_count_against_the_owner_cap(nats_server: EmbeddedNats) -> None:
    async with running_gateway(nats_server.url, gateway_options(max_sse_per_owner=1)) as gw:
        chat = chat_id()
        session = gw.gateway.commands.ids.chat("alice", chat)
        async with posted(gw.alice, chat):
            version = (await gw.store.head(session)).version
            resp = await gw.alice.post("/api/chat", json=body(chat, user("again")))
            assert resp.status_code == 429 and resp.json()["error"]["type"] == "too_many_streams"
            assert (await gw.store.head(session)).version == version
            assert (await gw.alice.get(f"/api/chat/{chat}/stream")).status_code == 429
        # the first stream's slot is given back when it ends
        await gw.gateway.hub.settled(lambda: gw.gateway.limiter.count("alice") == 0)
        async with gw.alice.stream("GET", f"/api/chat/{chat}/stream") as resp:
            assert resp.status_code == 200
            await resp.aclose()


async def test_the_oldest_unfinished_turn_is_the_one_resumed(nats_server: EmbeddedNats) -> None:
    async with running_gateway(nats_server.url) as gw:
        chat = chat_id()
        session = gw.gateway.commands.ids.chat("alice", chat)
        async with posted(gw.alice, chat, "one") as (_, first, _chunks):
            pass
        async with posted(gw.alice, chat, "two") as (_, second, _chunks):
            pass
        recs = await gw.store.load(session)
        async with gw.alice.stream("GET", f"/api/chat/{chat}/stream") as resp:
            chunks = frames(resp)
            assert json.loads((await anext(chunks))[1])["messageId"] == first
        await gw.gateway.hub.settled(lambda: gw.gateway.limiter.count("alice") == 0)
        await agent_turn(gw.store, session, first)
        async with gw.alice.stream("GET", f"/api/chat/{chat}/stream") as resp:
            chunks = frames(resp)
            assert json.loads((await anext(chunks))[1])["messageId"] == second
        asked = [r for r in recs if isinstance(r.event, UserMessage)]
        assert [r.turn for r in asked] == [first, second]


async def test_regenerate_while_the_answer_runs_streams_that_answer(
    nats_server: EmbeddedNats,
) -> None:
    async with running_gateway(nats_server.url) as gw:
        chat = chat_id()
        session = gw.gateway.commands.ids.chat("alice", chat)
        asked = user("question")
        async with gw.alice.stream("POST", "/api/chat", json=body(chat, asked)) as resp:
            turn = json.loads((await anext(frames(resp)))[1])["messageId"]
        again = body(chat, asked, trigger="regenerate-message")
        async with gw.alice.stream("POST", "/api/chat", json=again) as resp:
            assert json.loads((await anext(frames(resp)))[1])["messageId"] == turn
        await agent_turn(gw.store, session, turn)
        async with gw.alice.stream("POST", "/api/chat", json=again) as resp:
            new_turn = json.loads((await anext(frames(resp)))[1])["messageId"]
        assert new_turn != turn
        questions = [r for r in await gw.store.load(session) if isinstance(r.event, UserMessage)]
        assert [(q.turn, q.envelope.key) for q in questions] == [
            (turn, f"message:{asked['id']}"),
            (new_turn, f"regenerate:{turn}"),
        ]
