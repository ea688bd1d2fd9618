"""A failed turn does not poison its session (issue 12 #6): its question stays in the
history but leaves the model's context, and a retry (REST, the AI SDK's regenerate) asks
it again as a new turn. The whole stack: gateway, agent, dev model (which records the
requests it gets), nats-server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.aisdk.test_usechat import body, read_stream, text_of, user
from tests.hardening.stack import Stack, running_stack
from threadline.events.schema import AssistantMessage
from threadline.services.runtime.natsserver import EmbeddedNats

#: fails the first four requests of its conversation: the agent's attempt (1 + 3 retries)
FAILS_ONCE = "[[fail:500 times=4]]"


@pytest.fixture
async def stack(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(nats_server.url, tmp_path, mcp_servers={}) as stack:
        yield stack


async def sent_for(stack: Stack, text: str) -> list[list[Any]]:
    """The messages of each request the dev model got whose conversation holds ``text``."""
    listing = await stack.model_requests()
    return [r["body"]["messages"] for r in listing["requests"] if text in json.dumps(r["body"])]


async def ended(stack: Stack, session: str, turn: str) -> tuple[str, str]:
    """(terminal kind, the answer's text) of ``turn``."""
    events = await stack.until_terminal(session, turn)
    answer = "".join(e.event.text for e in events if isinstance(e.event, AssistantMessage))
    return events[-1].kind, answer


async def test_a_failed_question_leaves_the_models_context(stack: Stack) -> None:
    session = await stack.new_session()
    failed = await stack.say(session, "[[fail:400]] doomed question")
    assert (await ended(stack, session, failed))[0] == "turn_failed"
    nxt = await stack.say(session, "plain question")
    kind, answer = await ended(stack, session, nxt)
    assert kind == "turn_completed" and answer.startswith("Echo: plain question")
    (messages,) = await sent_for(stack, "plain question")
    assert "doomed" not in json.dumps(messages)
    # the history still shows it, failed
    detail = (await stack.client("alice").get(f"/v1/sessions/{session}")).json()
    assert [t["status"] for t in detail["turns"]] == ["failed", "completed"]
    assert [m["text"] for m in detail["messages"] if m["role"] == "user"] == [
        "[[fail:400]] doomed question",
        "plain question",
    ]


async def test_retry_a_failed_turn_over_rest(stack: Stack) -> None:
    session = await stack.new_session()
    alice = stack.client("alice")
    failed = await stack.say(session, f"{FAILS_ONCE} ask me again")
    assert (await ended(stack, session, failed))[0] == "turn_failed"
    response = await alice.post(f"/v1/sessions/{session}/retry", json={"turn_id": failed})
    assert response.status_code == 202, response.text
    retried = response.json()["turn_id"]
    assert retried != failed
    kind, answer = await ended(stack, session, retried)
    assert kind == "turn_completed" and answer.startswith("Echo: ask me again")
    # the retry's request carries the question once
    assert json.dumps(await sent_for(stack, "ask me again")).count("ask me again") == 5
    *_, last = await sent_for(stack, "ask me again")
    assert json.dumps(last).count("ask me again") == 1
    # asking again for the same turn answers with the same retry; no body: the latest turn
    again = await alice.post(f"/v1/sessions/{session}/retry", json={"turn_id": failed})
    assert again.status_code == 202 and again.json()["turn_id"] == retried
    latest = await alice.post(f"/v1/sessions/{session}/retry")
    assert latest.status_code == 202 and latest.json()["turn_id"] not in (failed, retried)
    unknown = await alice.post(f"/v1/sessions/{session}/retry", json={"turn_id": "nope"})
    assert unknown.status_code == 404, unknown.text


async def test_retry_a_failed_turn_with_the_ai_sdk_regenerate(stack: Stack) -> None:
    alice = stack.client("alice")
    chat, question = "retrychat0123456", user(f"{FAILS_ONCE} regenerate me")
    async with alice.stream("POST", "/api/chat", json=body(chat, question)) as response:
        chunks, _, done = await read_stream(response)
    assert done and [c["type"] for c in chunks][-2:] == ["error", "finish"]
    regenerate = body(chat, question, trigger="regenerate-message")
    async with alice.stream("POST", "/api/chat", json=regenerate) as response:
        chunks, _, done = await read_stream(response)
    assert done and chunks[-1]["type"] == "finish"
    assert text_of(chunks).startswith("Echo: regenerate me")
    *_, last = await sent_for(stack, "regenerate me")
    assert json.dumps(last).count("regenerate me") == 1
