"""Tool approvals with the whole stack (gateway, agent, the bundled MCP server, the dev
model that records what it is sent, nats-server): a call waits for a person, durably;
approved, denied, two answers at once, the deadline, a stop while waiting, and an agent
killed (-9) while a call waits, the turn finished by another agent process."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from tests.agent.procs import spawn_agent
from tests.agent.test_failed_turns import ended, sent_for
from tests.conftest import fresh_stream
from tests.hardening.stack import Stack, running_stack
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import (
    TERMINAL_KINDS,
    ApprovalDenied,
    ApprovalRequested,
    SessionStarted,
    UserMessage,
)
from threadline.events.sealing import DirectoryKeyStore, Keyring
from threadline.events.store import NewEvent, Recorded
from threadline.services.agent.turn import AgentSettings
from threadline.services.commands import AnswerApproval, SessionCommands
from threadline.services.devmodel import DevModelSettings, serve
from threadline.services.runtime.natsserver import EmbeddedNats

ECHO = '[[tool:echo {"text": "hi"}]] echo it'


def agent(timeout_s: float = 3600) -> AgentSettings:
    return AgentSettings(
        worker="approvals", retry_base_s=0.01, delta_window_s=0.01, approval_timeout_s=timeout_s
    )


@pytest.fixture
async def stack(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(nats_server.url, tmp_path, agent=agent()) as stack:
        yield stack


async def first_of(
    store: JetStreamEventStore, session: str, *kinds: str, attempt: int | None = None
) -> Recorded:
    """The session's first record of one of ``kinds`` (of ``attempt``, if given)."""
    async with asyncio.timeout(30):
        async for rec in store.follow(session):
            if rec.kind in kinds and attempt in (None, rec.attempt):
                return rec
    raise AssertionError("unreachable")


async def first(stack: Stack, session: str, kind: str) -> Recorded:
    return await first_of(stack.store, session, kind)


async def asking(stack: Stack, text: str = ECHO) -> tuple[str, str, str]:
    """A session that asks for approval of every call, and a turn waiting for one:
    (session, turn, call id)."""
    session = await stack.new_session(tool_servers=["threadline"], approval="always")
    turn = await stack.say(session, text)
    asked = await first(stack, session, "approval_requested")
    assert isinstance(asked.event, ApprovalRequested) and asked.turn == turn
    assert asked.event.tool == "threadline__echo" and asked.event.arguments == {"text": "hi"}
    return session, turn, asked.event.call_id


async def decide(
    stack: Stack, session: str, call: str, approved: bool, **more: Any
) -> httpx.Response:
    return await stack.client("alice").post(
        f"/v1/sessions/{session}/approvals/{call}", json={"approved": approved, **more}
    )


async def test_an_approved_call_runs_and_the_turn_carries_on(stack: Stack) -> None:
    session, turn, call = await asking(stack)
    detail = (await stack.client("alice").get(f"/v1/sessions/{session}")).json()
    (view,) = detail["turns"]
    assert view["status"] == "running" and view["approvals"][0]["status"] == "waiting"
    assert len(await sent_for(stack, "echo it")) == 1  # asked once; nothing open meanwhile
    response = await decide(stack, session, call, True, reason="looks safe")
    assert response.status_code == 200, response.text
    assert response.json()["approved"] is True and response.json()["turn_id"] == turn
    kind, answer = await ended(stack, session, turn)
    assert kind == "turn_completed" and answer == "Tool threadline__echo returned: hi"
    records = await stack.store.load(session)
    assert [r.kind for r in records].count("turn_started") == 1  # the same attempt, resumed
    granted = next(r for r in records if r.kind == "approval_granted")
    assert granted.envelope.actor == "user:alice" and granted.event.reason == "looks safe"
    detail = (await stack.client("alice").get(f"/v1/sessions/{session}")).json()
    (approval,) = detail["turns"][0]["approvals"]
    assert approval | {"deadline": 0} == {
        "call_id": call, "tool": "threadline__echo", "arguments": {"text": "hi"},
        "status": "granted", "deadline": 0, "reason": "looks safe", "decided_by": "user:alice",
    }  # fmt: skip
    again = await decide(stack, session, call, False)
    assert again.status_code == 409 and again.json()["error"]["type"] == "approval_decided"


async def test_a_denied_call_is_told_to_the_model(stack: Stack) -> None:
    session, turn, call = await asking(stack)
    response = await decide(stack, session, call, False, reason="not today")
    assert response.status_code == 200 and response.json()["approved"] is False
    kind, answer = await ended(stack, session, turn)
    denial = "This tool call was not run: the user denied it. Their reason: not today"
    assert kind == "turn_completed" and answer == f"Tool threadline__echo returned: {denial}"
    *_, last = await sent_for(stack, "echo it")
    assert denial in json.dumps(last)


async def test_two_answers_at_once_one_wins(stack: Stack) -> None:
    session, turn, call = await asking(stack)
    answers = await asyncio.gather(
        decide(stack, session, call, True), decide(stack, session, call, False, reason="no")
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    assert (await ended(stack, session, turn))[0] == "turn_completed"
    kinds = [r.kind for r in await stack.store.load(session)]
    assert kinds.count("approval_granted") + kinds.count("approval_denied") == 1


async def test_a_stop_while_a_call_waits(stack: Stack) -> None:
    session, turn, call = await asking(stack)
    response = await stack.client("alice").post(f"/v1/sessions/{session}/cancel")
    assert response.status_code == 202, response.text
    assert (await ended(stack, session, turn))[0] == "turn_cancelled"
    late = await decide(stack, session, call, True)
    assert late.status_code == 409 and late.json()["error"]["type"] == "turn_finished"
    # the session carries on: the next turn runs (and, the cancelled question being still
    # in its context, asks about a call of its own)
    nxt = await stack.say(session, "plain question")
    asked = [r async for r in _until(stack, session, nxt, "approval_requested")]
    assert asked[-1].event.call_id != call


async def _until(stack: Stack, session: str, turn: str, kind: str) -> AsyncIterator[Recorded]:
    async with asyncio.timeout(30):
        async for rec in stack.store.follow(session):
            if rec.turn == turn:
                yield rec
                if rec.kind == kind:
                    return


async def test_the_deadline_denies_and_a_late_answer_gets_409(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with running_stack(nats_server.url, tmp_path, agent=agent(timeout_s=1)) as stack:
        session, turn, call = await asking(stack)
        denied = await first(stack, session, "approval_denied")
        assert isinstance(denied.event, ApprovalDenied) and denied.event.expired
        assert denied.envelope.actor == "system"
        kind, answer = await ended(stack, session, turn)
        assert kind == "turn_completed" and "nobody approved it before its deadline" in answer
        late = await decide(stack, session, call, True)
        assert late.status_code == 409 and late.json()["error"]["type"] == "approval_decided"


async def test_an_agent_killed_while_a_call_waits(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """The waiting turn holds nothing: the agent that asked is killed (-9); the decision
    is made with no agent running; another agent process finishes the turn."""
    store = await JetStreamEventStore.connect(nats_server.url, fresh_stream(), heartbeat_s=0.5)
    # the agents seal the answer with the content keys of their data dir: read with them
    store.keyring = Keyring(DirectoryKeyStore(tmp_path / "keys" / "content"))
    try:
        async with serve(DevModelSettings.fast()) as model:
            first_agent = await spawn_agent(
                store, model, tmp_path, stderr=asyncio.subprocess.DEVNULL
            )
            started = SessionStarted(owner="alice", tool_servers=("threadline",), approval="always")
            await store.append("s1", NewEvent(event=started), expected_version=0)
            await store.append("s1", NewEvent(event=UserMessage(text=ECHO), turn="t1"))
            asked = await first_of(store, "s1", "approval_requested")
            assert isinstance(asked.event, ApprovalRequested)
            first_agent.send_signal(signal.SIGKILL)
            assert await first_agent.wait() == -signal.SIGKILL
            commands = SessionCommands(store)
            answer = AnswerApproval(
                session="s1", actor="user:alice", call_id=asked.event.call_id, approved=True
            )
            await commands.answer_approval(answer)
            second = await spawn_agent(store, model, tmp_path, stderr=asyncio.subprocess.DEVNULL)
            try:
                done = await first_of(store, "s1", *TERMINAL_KINDS)
            finally:
                second.send_signal(signal.SIGTERM)
                await second.wait()
            assert done.kind == "turn_completed"
            records = await store.load("s1")
            result = next(r for r in records if r.kind == "tool_result")
            assert result.event.content == "hi" and not result.event.is_error
            assert [r.kind for r in records].count("turn_started") == 1
    finally:
        await store.close()


async def test_an_agent_killed_while_it_carries_a_turn_on(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """Killed (-9) after the approved call ran, while the model answers: the decision's
    delivery goes to another agent process, which starts the turn again (attempt 2), as
    a user message's redelivery would, and ends it; it is not left running forever.
    Attempt 2 starts from the question alone: it is not sent attempt 1's call and
    result, and its own call waits for a decision of its own (an approval belongs to
    the attempt that asked)."""
    store = await JetStreamEventStore.connect(nats_server.url, fresh_stream(), heartbeat_s=0.5)
    slow = f"[[pace:ttft=0,tps=2]] {ECHO}"
    try:
        async with serve(DevModelSettings.fast()) as model:
            agent = await spawn_agent(store, model, tmp_path, stderr=asyncio.subprocess.DEVNULL)
            started = SessionStarted(owner="alice", tool_servers=("threadline",), approval="always")
            await store.append("s2", NewEvent(event=started), expected_version=0)
            await store.append("s2", NewEvent(event=UserMessage(text=slow), turn="t1"))
            asked = await first_of(store, "s2", "approval_requested")
            assert isinstance(asked.event, ApprovalRequested)
            commands = SessionCommands(store)
            yes = AnswerApproval(
                session="s2", actor="user:alice", call_id=asked.event.call_id, approved=True
            )
            await commands.answer_approval(yes)
            await first_of(store, "s2", "tool_result")  # the resumed attempt ran the call
            agent.send_signal(signal.SIGKILL)
            assert await agent.wait() == -signal.SIGKILL
            agent = await spawn_agent(store, model, tmp_path, stderr=asyncio.subprocess.DEVNULL)
            try:  # the decision's delivery, redelivered: a new attempt ends the turn
                again = await first_of(store, "s2", "approval_requested", attempt=2)
                assert isinstance(again.event, ApprovalRequested)
                assert again.event.call_id != asked.event.call_id
                await commands.answer_approval(
                    msgspec.structs.replace(yes, call_id=again.event.call_id)
                )
                done = await first_of(store, "s2", *TERMINAL_KINDS)
            finally:
                agent.send_signal(signal.SIGTERM)
                await agent.wait()
            assert done.kind == "turn_completed" and done.attempt == 2
    finally:
        await store.close()
