"""Double texting with the whole stack (gateway, agent, dev model that records what it is
sent, nats-server): a message sent while a turn runs, under each policy, over REST and
the AI SDK route; what the log records and what the model is sent afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.test_failed_turns import ended, sent_for
from tests.aisdk.test_usechat import body, read_stream, text_of, user
from tests.hardening.stack import Stack, running_stack
from threadline.events.schema import CancelRequested, TextDelta, TurnCancelled
from threadline.services.runtime.natsserver import EmbeddedNats

#: an answer slow enough (60 words at 5 a second) to be interrupted after its first words
SLOW = "[[pace:ttft=0,tps=5]] [[words:60]]"


@pytest.fixture
async def stack(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(nats_server.url, tmp_path, mcp_servers={}) as stack:
        yield stack


async def streaming(stack: Stack, session: str, turn: str) -> None:
    """Until ``turn`` has streamed some of its answer."""
    async with asyncio.timeout(30):
        async for rec in stack.store.follow(session):
            if rec.turn == turn and isinstance(rec.event, TextDelta):
                return


async def test_enqueue_answers_the_new_message_after_the_whole_answer(stack: Stack) -> None:
    session = await stack.new_session(double_texting="enqueue")
    first = await stack.say(session, f"{SLOW} first question")
    await streaming(stack, session, first)
    second = await stack.say(session, "second question")
    kind, first_answer = await ended(stack, session, first)
    assert kind == "turn_completed" and len(first_answer.split()) == 60
    kind, answer = await ended(stack, session, second)
    assert kind == "turn_completed" and answer.startswith("Echo: second question")
    (messages,) = await sent_for(stack, "second question")
    assert "first question" in json.dumps(messages)
    assert json.dumps(first_answer) in json.dumps(messages)  # the first answer, whole


@pytest.mark.parametrize("policy", ["interrupt", "rollback"])
async def test_a_new_message_stops_the_running_turn(stack: Stack, policy: str) -> None:
    session = await stack.new_session(double_texting=policy)
    first = await stack.say(session, f"{SLOW} first question")
    await streaming(stack, session, first)
    second = await stack.say(session, "second question")
    events = await stack.until_terminal(session, first)
    stop = next(e for e in events if isinstance(e.event, CancelRequested))
    assert stop.envelope.actor == "user:alice" and stop.event.rollback == (policy == "rollback")
    cancelled = events[-1].event
    assert isinstance(cancelled, TurnCancelled) and cancelled.partial_text.startswith("lorem")
    kind, answer = await ended(stack, session, second)
    assert kind == "turn_completed" and answer.startswith("Echo: second question")
    # what the model is sent for the new message
    (messages,) = await sent_for(stack, "second question")
    sent = json.dumps(messages)
    if policy == "interrupt":  # the stopped turn's question and partial answer
        assert "first question" in sent and json.dumps(cancelled.partial_text)[1:-1] in sent
    else:  # neither
        assert "first question" not in sent and "lorem" not in sent
    # the history keeps the stopped turn either way, and says which it was
    detail = (await stack.client("alice").get(f"/v1/sessions/{session}")).json()
    assert detail["double_texting"] == policy
    turns = detail["turns"]
    assert [(t["status"], t["cancel_requested"], t["rolled_back"]) for t in turns] == [
        ("cancelled", True, policy == "rollback"),
        ("completed", False, False),
    ]
    assert [m["text"] for m in detail["messages"] if m["role"] == "assistant"][0] == (
        cancelled.partial_text
    )
    # a third message: the rolled-back turn stays out of the context for good
    third = await stack.say(session, "third question")
    assert (await ended(stack, session, third))[0] == "turn_completed"
    (messages,) = await sent_for(stack, "third question")
    assert ("first question" in json.dumps(messages)) == (policy == "interrupt")


async def test_reject_answers_409_over_rest_and_the_ai_sdk_route(stack: Stack) -> None:
    alice = stack.client("alice")
    session = await stack.new_session(double_texting="reject")
    first = await stack.say(session, f"{SLOW} first question")
    await streaming(stack, session, first)
    before = len(await stack.store.load(session))
    refused = await alice.post(f"/v1/sessions/{session}/messages", json={"text": "too soon"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["type"] == "turn_running"
    chat = await alice.post("/api/chat", json=body(session, user("too soon as well")))
    assert chat.status_code == 409, chat.text
    assert chat.json()["error"]["type"] == "turn_running"
    kinds = [r.kind for r in (await stack.store.load(session))[before:]]
    assert "user_message" not in kinds and "cancel_requested" not in kinds
    assert (await ended(stack, session, first))[0] == "turn_completed"
    later = await stack.say(session, "after the answer")
    assert (await ended(stack, session, later))[0] == "turn_completed"


async def test_the_ai_sdk_route_interrupts_like_rest(stack: Stack) -> None:
    alice = stack.client("alice")
    session = await stack.new_session(double_texting="interrupt")
    first = await stack.say(session, f"{SLOW} first question")
    await streaming(stack, session, first)
    async with alice.stream("POST", "/api/chat", json=body(session, user("from useChat"))) as r:
        assert r.status_code == 200
        chunks, _, done = await read_stream(r)
    assert done and text_of(chunks).startswith("Echo: from useChat")
    assert (await ended(stack, session, first))[0] == "turn_cancelled"
    (messages,) = await sent_for(stack, "from useChat")
    assert "first question" in json.dumps(messages)
