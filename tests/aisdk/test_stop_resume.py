"""The two ``useChat`` edges at a chat's ends, with the real ``ai`` package (chat.mjs):
``resume: true`` on a chat that has no session yet, and a ``stop()`` that lasts.

The same in a browser, through examples/aisdk-react: test_example_app.py.
"""

from __future__ import annotations

import asyncio
import json

from tests.aisdk.conftest import Stack
from tests.aisdk.test_usechat import body, chat_id, frames, user

LONG = "[[pace:ttft=0,tps=20]] [[words:200]]"


async def test_resume_on_a_new_chat_is_nothing_to_resume(stack: Stack) -> None:
    chat = chat_id()
    out = await stack.chat(mode="resume", chatId=chat)
    assert [r["status"] for r in out["responses"]] == [204]
    assert (out["status"], out["error"], out["errors"], out["messages"]) == ("ready", None, [], [])
    assert (await stack.store.head(stack.session(chat))).version == 0  # nothing made


async def test_another_owners_chat_and_no_chat_answer_alike(stack: Stack) -> None:
    """Bob resuming alice's chat id, or her session's id, while her answer streams, gets
    what an id nobody used gets: 204, no body, the same headers."""
    chat = chat_id()
    session = stack.session(chat)
    async with (
        stack.client("alice-token") as alice,
        alice.stream("POST", "/api/chat", json=body(chat, user(LONG))) as streaming,
        stack.client("bob-token") as bob,
    ):
        async for _, data in frames(streaming):  # alice's answer is under way
            if json.loads(data)["type"] == "text-delta":
                break
        url, after = f"/api/chat/{chat}/stream", {"Last-Event-ID": "999999"}
        async with alice.stream("GET", url, headers=after) as mine:
            assert mine.status_code == 200  # hers: her turn in flight
        answers = [await bob.get(f"/api/chat/{cid}/stream") for cid in (chat, session, chat_id())]
        for resp in answers:
            assert (resp.status_code, resp.content) == (204, b"")
            assert sorted(resp.headers) == sorted(answers[-1].headers)
        out = await stack.chat(mode="resume", chatId=chat, token="bob-token")
    assert [r["status"] for r in out["responses"]] == [204]
    assert (out["status"], out["error"], out["messages"]) == ("ready", None, [])


async def test_stop_with_cancel_ends_the_turn_for_good(stack: Stack) -> None:
    chat = chat_id()
    out = await stack.chat(mode="stop", chatId=chat, text=LONG, cancel=True)
    assert out["finish"]["isAbort"] is True and out["status"] == "ready"
    assert out["cancel"]["status"] == 202, out["cancel"]
    turn = out["cancel"]["body"]["turn_id"]
    assert turn == out["messages"][1]["id"]
    ended = await stack.ended(stack.session(chat), turn)
    assert ended.kind == "turn_cancelled"
    again = await stack.chat(mode="resume", chatId=chat)  # a reload: it does not come back
    assert [r["status"] for r in again["responses"]] == [204] and again["messages"] == []
    async with stack.client("alice-token") as alice:  # nothing left to stop
        assert (await alice.post(f"/api/chat/{chat}/cancel")).status_code == 409


async def test_stop_alone_leaves_the_turn_running(stack: Stack) -> None:
    """Without the cancel the agent answers on, and a reload resumes the answer."""
    chat = chat_id()
    out = await stack.chat(mode="stop", chatId=chat, text=LONG, cancel=False)  # 10 s
    assert out["finish"]["isAbort"] is True
    turn = out["messages"][1]["id"]
    resumed = asyncio.create_task(stack.chat(mode="resume", chatId=chat))
    assert (await stack.ended(stack.session(chat), turn)).kind == "turn_completed"
    again = await resumed
    assert [r["status"] for r in again["responses"]] == [200]
    assert again["messages"][0]["id"] == turn


async def test_cancel_by_chat_id_is_per_owner(stack: Stack) -> None:
    chat = chat_id()
    async with (
        stack.client("alice-token") as alice,
        alice.stream("POST", "/api/chat", json=body(chat, user(LONG))) as streaming,
        stack.client("bob-token") as bob,
    ):
        stream = frames(streaming)
        async for _, data in stream:
            if json.loads(data)["type"] == "text-delta":
                break
        session = stack.session(chat)
        for cid in (chat, session, chat_id()):  # his own chats: none exists
            resp = await bob.post(f"/api/chat/{cid}/cancel")
            assert resp.status_code == 404 and resp.json()["error"]["type"] == "session_not_found"
        stop = await alice.post(f"/api/chat/{chat}/cancel", json={"reason": "enough"})
        assert stop.status_code == 202
        rest = [json.loads(data) async for _, data in stream if data != "[DONE]"]
    assert [c["type"] for c in rest][-2:] == ["abort", "finish"]
    recs = await stack.store.load(session)
    assert [r.envelope.actor for r in recs if r.kind == "cancel_requested"] == ["user:alice"]
