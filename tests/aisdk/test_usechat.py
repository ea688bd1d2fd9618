"""``useChat`` end to end: the real ``ai`` package (Node) -> gateway -> agent -> dev model -> MCP.

The Node side is the AI SDK's chat core (``AbstractChat``, what ``useChat`` wraps) with
``DefaultChatTransport``; see chat.mjs.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.aisdk.conftest import Stack
from threadline.events.schema import (
    AssistantMessage,
    SessionStarted,
    TurnCompleted,
    UserMessage,
)
from threadline.events.store import Recorded

SLOW = "[[pace:ttft=0,tps=20]] [[words:60]]"
#: 8 s: time for a node process to start and resume it, even on a loaded machine
SLOWER = "[[pace:ttft=0,tps=20]] [[words:160]]"


def chat_id() -> str:
    """An id like the AI SDK's ``generateId()``: 16 letters and digits."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))


def user(text: str, message_id: str | None = None) -> dict[str, Any]:
    return {
        "id": message_id or chat_id(),
        "role": "user",
        "parts": [{"type": "text", "text": text}],
    }


def body(chat: str, *messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": chat, "messages": list(messages), "trigger": "submit-message", **extra}


async def frames(response: httpx.Response) -> AsyncIterator[tuple[int | None, str]]:
    """(``id:`` position or None, ``data:``) of each SSE event; comments skipped."""
    position: int | None = None
    data: str | None = None
    async for line in response.aiter_lines():
        if line == "":
            if data is not None:
                yield position, data
            position, data = None, None
        elif line.startswith("id: "):
            position = int(line[4:])
        elif line.startswith("data: "):
            data = line[6:]


async def read_stream(response: httpx.Response) -> tuple[list[dict[str, Any]], list[int], bool]:
    """Every chunk, the positions seen, and whether ``[DONE]`` ended it."""
    chunks: list[dict[str, Any]] = []
    positions: list[int] = []
    async with asyncio.timeout(30):
        async for position, data in frames(response):
            if data == "[DONE]":
                return chunks, positions, True
            chunks.append(json.loads(data))
            if position is not None:
                positions.append(position)
    return chunks, positions, False


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


async def records(stack: Stack, chat: str) -> list[Recorded]:
    """The events of alice's chat ``chat``."""
    return await stack.store.load(stack.session(chat))


def answer(recs: list[Recorded], turn: str) -> str:
    """The final text of a turn's last step, from the log."""
    msgs = [r.event for r in recs if r.turn == turn and isinstance(r.event, AssistantMessage)]
    return msgs[-1].text


async def test_use_chat_sends_a_message_and_assembles_text_and_tool_parts(stack: Stack) -> None:
    chat = chat_id()
    out = await stack.chat(
        mode="send",
        chatId=chat,
        text='say it [[tool:echo {"text": "hi"}]]',
        body={"tool_servers": ["threadline"]},
    )
    assert (out["status"], out["error"], out["errors"]) == ("ready", None, [])
    (response,) = out["responses"]
    assert response["status"] == 200 and response["protocol"] == "v1"
    assert response["contentType"].startswith("text/event-stream")
    assert response["session"] == stack.session(chat)
    asked, reply = out["messages"]
    recs = await records(stack, chat)
    started = recs[0].event
    assert isinstance(started, SessionStarted)
    assert (started.owner, started.tool_servers, started.title) == (
        "alice", ("threadline",), 'say it [[tool:echo {"text": "hi"}]]',
    )  # fmt: skip
    sent = next(r for r in recs if isinstance(r.event, UserMessage))
    assert sent.event.client_message_id == asked["id"]  # type: ignore[union-attr]
    assert reply["id"] == sent.turn and reply["role"] == "assistant"
    assert [p["type"] for p in reply["parts"]] == [
        "step-start", "dynamic-tool", "step-start", "text",
    ]  # fmt: skip
    tool = reply["parts"][1]
    assert (tool["toolName"], tool["state"], tool["input"]) == (
        "threadline__echo", "output-available", {"text": "hi"},
    )  # fmt: skip
    assert "hi" in tool["output"]
    assert reply["parts"][3]["text"] == answer(recs, sent.turn or "")
    assert out["finish"] == {
        "finishReason": "stop", "isAbort": False, "isError": False, "isDisconnect": False,
    }  # fmt: skip

    # a retry of the same message appends nothing and replays the same answer
    async with stack.client("alice-token") as alice:
        again = body(chat, asked)
        async with alice.stream("POST", "/api/chat", json=again) as resp:
            assert resp.status_code == 200
            assert resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
            chunks, positions, done = await read_stream(resp)
    assert done and chunks[0] == {"type": "start", "messageId": sent.turn}
    assert chunks[-1] == {"type": "finish", "finishReason": "stop"}
    assert positions == sorted(positions) and positions[-1] == recs[-1].position
    assert len(await records(stack, chat)) == len(recs)


async def test_resume_mid_turn_assembles_the_full_answer(stack: Stack) -> None:
    chat = chat_id()
    async with stack.client("alice-token") as alice:
        async with alice.stream("POST", "/api/chat", json=body(chat, user(SLOWER))) as resp:
            assert resp.status_code == 200
            stream = frames(resp)
            async for _, data in stream:  # wait until the answer is under way
                if json.loads(data)["type"] == "text-delta":
                    break
            resumed = asyncio.create_task(stack.chat(mode="resume", chatId=chat))
            rest = [data async for _, data in stream]
            assert rest[-1] == "[DONE]"
        out = await resumed
    (response,) = out["responses"]
    assert response["status"] == 200 and response["method"] == "GET"
    assert response["url"].endswith(f"/api/chat/{chat}/stream")
    recs = await records(stack, chat)
    turn = next(r.turn for r in recs if isinstance(r.event, UserMessage))
    done = next(r for r in recs if isinstance(r.event, TurnCompleted))
    assert response["at"] * 1000 < done.envelope.at, "the resume came after the turn ended"
    assert (out["status"], out["error"]) == ("ready", None)
    (reply,) = out["messages"]
    assert reply["id"] == turn
    assert [p["type"] for p in reply["parts"]] == ["step-start", "text"]
    full = answer(recs, turn or "")
    assert len(full.split()) >= 60 and reply["parts"][1]["text"] == full


async def test_resume_without_a_turn_in_flight_is_204(stack: Stack) -> None:
    chat = chat_id()
    first = await stack.chat(mode="send", chatId=chat, text="hello")
    assert first["status"] == "ready"
    out = await stack.chat(mode="resume", chatId=chat)
    assert [r["status"] for r in out["responses"]] == [204]
    assert (out["status"], out["error"], out["messages"]) == ("ready", None, [])
    async with stack.client("alice-token") as alice:
        resp = await alice.get(f"/api/chat/{chat}/stream")
    assert resp.status_code == 204 and resp.content == b""


async def test_regenerate_asks_the_last_user_message_again(stack: Stack) -> None:
    chat = chat_id()
    first = await stack.chat(mode="send", chatId=chat, text="once more")
    out = await stack.chat(mode="regenerate", chatId=chat, messages=first["messages"])
    assert (out["status"], out["error"]) == ("ready", None)
    asked, reply = out["messages"]
    assert asked == first["messages"][0]
    assert reply["id"] != first["messages"][1]["id"]
    recs = await records(stack, chat)
    questions = [r for r in recs if isinstance(r.event, UserMessage)]
    assert [q.event.client_message_id for q in questions] == [asked["id"]] * 2  # type: ignore[union-attr]
    assert reply["id"] == questions[1].turn
    assert reply["parts"][-1]["text"] == answer(recs, questions[1].turn or "")


async def test_reasoning_is_a_reasoning_part(stack: Stack) -> None:
    out = await stack.chat(mode="send", chatId=chat_id(), text="[[reason:let me think]] hello")
    parts = out["messages"][1]["parts"]
    assert [p["type"] for p in parts] == ["step-start", "reasoning", "text"]
    assert parts[1]["text"] == "let me think" and "hello" in parts[2]["text"]


async def test_a_failed_turn_is_an_error(stack: Stack) -> None:
    out = await stack.chat(mode="send", chatId=chat_id(), text="[[fail:401]]")
    assert out["status"] == "error"
    assert "(auth)" in out["error"] and out["finish"]["isError"] is True


async def test_restarted_attempts_are_marked(stack: Stack) -> None:
    """Every attempt's stream breaks after some text: each new attempt is marked, then
    the turn fails."""
    out = await stack.chat(mode="send", chatId=chat_id(), text="[[drop:after=3]] [[words:8]]")
    assert out["status"] == "error"
    reply = out["messages"][1]
    kinds = [p["type"] for p in reply["parts"]]
    restarts = [p["data"] for p in reply["parts"] if p["type"] == "data-restart"]
    assert restarts == [{"attempt": 2, "superseded": 1}, {"attempt": 3, "superseded": 2}]
    assert kinds.count("data-fallback") >= 2 and kinds[-1] == "text"


async def test_cancel_ends_the_stream_with_abort(stack: Stack) -> None:
    chat = chat_id()
    seen: list[dict[str, Any]] = []
    async with (
        stack.client("alice-token") as alice,
        alice.stream("POST", "/api/chat", json=body(chat, user(SLOW))) as resp,
    ):
        async for _, data in frames(resp):
            if data == "[DONE]":
                break
            seen.append(json.loads(data))
            if seen[-1]["type"] == "text-delta" and len(seen) == 4:
                stop = await alice.post(f"/v1/sessions/{stack.session(chat)}/cancel")
                assert stop.status_code == 202, stop.text
    assert [c["type"] for c in seen][-3:] == ["finish-step", "abort", "finish"]
    assert seen[-1] == {"type": "finish", "finishReason": "other"}


async def test_other_owners_and_anonymous_callers_get_nothing(stack: Stack) -> None:
    chat = chat_id()
    await stack.chat(mode="send", chatId=chat, text="mine")
    before = len(await records(stack, chat))
    session = stack.session(chat)
    async with (
        stack.client("bob-token") as bob,
        stack.client(None) as anonymous,
        stack.client("root-token") as root,
    ):
        # a chat id is per owner: bob's chat of alice's id (or of her session's) is his own
        for theirs in (chat, session):
            async with bob.stream("POST", "/api/chat", json=body(theirs, user("x"))) as resp:
                assert resp.status_code == 200
                assert resp.headers["x-threadline-session"] == stack.session(theirs, "bob")
                await read_stream(resp)
        assert (await bob.get(f"/api/chat/{session}/stream")).status_code == 204  # his own
        for resp in (
            await anonymous.post("/api/chat", json=body(chat, user("hi"))),
            await anonymous.get(f"/api/chat/{chat}/stream"),
        ):
            assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
        assert (await root.get(f"/v1/sessions/{session}")).status_code == 200  # may read
        assert (await root.get(f"/api/chat/{session}/stream")).status_code == 204  # not his chat
        assert (await root.post(f"/api/chat/{session}/cancel")).status_code == 404
    assert len(await records(stack, chat)) == before


async def test_chat_ids_that_are_not_session_ids_are_mapped(stack: Stack) -> None:
    chat = "chat: 42 é"
    async with stack.client("alice-token") as alice:
        async with alice.stream("POST", "/api/chat", json=body(chat, user("hi"))) as resp:
            session = resp.headers["x-threadline-session"]
            _, _, done = await read_stream(resp)
        assert done and session.startswith("ai-") and len(session) == 35
        resumed = await alice.get("/api/chat/chat%3A%2042%20%C3%A9/stream")
        assert resumed.status_code == 204
    async with (
        stack.client("bob-token") as bob,  # bob's chat of that id is his own
        bob.stream("POST", "/api/chat", json=body(chat, user("hi"))) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["x-threadline-session"] != session
        await read_stream(resp)


async def test_bad_requests_append_nothing(stack: Stack) -> None:
    chat = chat_id()
    assistant = {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "hi"}]}
    file_part = {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA=="}
    cases = [
        (body(chat, assistant), 422),
        (body(chat, {"id": "u1", "role": "user", "parts": [file_part]}), 422),
        (body(chat, {"id": "u1", "role": "user", "parts": []}), 422),
        (body(chat, user("hi"), tool_servers=["nope"]), 422),
        (body(chat, user("hi"), trigger="resume-stream"), 422),
        ({"id": chat, "messages": []}, 422),
        ({"messages": [user("hi")]}, 422),
    ]
    async with stack.client("alice-token") as alice:
        for request, status in cases:
            resp = await alice.post("/api/chat", json=request)
            assert resp.status_code == status, (request, resp.text)
        malformed = await alice.post(
            "/api/chat", content=b"{", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400
        assert (await stack.store.head(stack.session(chat))).version == 0
        asked = user("first", "m-1")
        async with alice.stream("POST", "/api/chat", json=body(chat, asked)) as resp:
            await read_stream(resp)
        edited = await alice.post("/api/chat", json=body(chat, user("edited", "m-1")))
        assert edited.status_code == 409 and edited.json()["error"]["field"] == "messages"
