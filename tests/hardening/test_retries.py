"""Item 5, idempotency: every command endpoint, retried three times with the same key,
appends once, one after the other and all three at once.

Against the real gateway, agent and dev model: besides the command's own event, the
work it starts happens once (one answered turn per message, one cancellation).
Endpoints: ``POST /v1/sessions`` (``Idempotency-Key``), ``POST …/messages``
(``Idempotency-Key``, and ``client_message_id``), ``POST …/cancel``
(``Idempotency-Key``), ``POST …/fork`` (``Idempotency-Key``) and ``POST /api/chat``
(the UIMessage id).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.hardening.stack import Stack, running_stack
from threadline.events.schema import TERMINAL_KINDS, ForkOrigin, is_fork_copy
from threadline.events.store import NewEvent
from threadline.services.runtime.natsserver import EmbeddedNats

RETRIES = 3


async def three(
    send: Callable[[], Awaitable[httpx.Response]], concurrent: bool
) -> list[httpx.Response]:
    if concurrent:
        return list(await asyncio.gather(*(send() for _ in range(RETRIES))))
    return [await send() for _ in range(RETRIES)]


async def kinds(stack: Stack, session: str) -> Counter[str]:
    return Counter(rec.kind for rec in await stack.store.load(session))


async def with_key(stack: Stack, session: str, key: str) -> int:
    """How many events of ``session`` carry idempotency key ``key``."""
    return sum(rec.envelope.key == key for rec in await stack.store.load(session))


async def settle(stack: Stack, session: str, turns: int) -> Counter[str]:
    """The session's kinds once ``turns`` turns have ended (bounded)."""
    async with asyncio.timeout(30):
        async for _ in stack.store.follow(session):
            counted = await kinds(stack, session)
            if sum(counted[k] for k in TERMINAL_KINDS) >= turns:
                return counted
    raise AssertionError("unreachable")


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
async def test_every_command_retried_three_times_appends_once(
    nats_server: EmbeddedNats, tmp_path: Path, mode: str, figure: Callable[[str], None]
) -> None:
    concurrent = mode == "concurrent"
    tag = uuid.uuid4().hex[:8]
    appended: dict[str, int] = {}
    async with running_stack(nats_server.url, tmp_path) as stack:
        alice = stack.client("alice")

        # create: one session, one session_started
        key = {"Idempotency-Key": f"create-{tag}"}
        answers = await three(lambda: alice.post("/v1/sessions", json={}, headers=key), concurrent)
        assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        session = answers[0].json()["id"]
        appended["create"] = (await kinds(stack, session))["session_started"]

        # message: one user_message, one turn answered
        url = f"/v1/sessions/{session}/messages"
        key = {"Idempotency-Key": f"msg-{tag}"}
        answers = await three(lambda: alice.post(url, json={"text": "hi"}, headers=key), concurrent)
        assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
        assert len({a.json()["turn_id"] for a in answers}) == 1
        body = {"text": "again", "client_message_id": f"cm-{tag}"}
        answers = await three(lambda: alice.post(url, json=body), concurrent)
        assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
        counted = await settle(stack, session, 2)
        appended["message"] = await with_key(stack, session, f"message:msg-{tag}")
        appended["message (client_message_id)"] = await with_key(
            stack, session, f"message:cm-{tag}"
        )
        assert counted["user_message"] == 2
        assert counted["turn_completed"] == 2 and counted["turn_started"] == 2

        # cancel: a long answer, stopped by three retries of one cancel
        slow = await stack.say(session, "[[words:400]] [[pace:tps=40]]")
        await _until_streaming(stack, session, slow)
        key = {"Idempotency-Key": f"stop-{tag}"}
        cancel = f"/v1/sessions/{session}/cancel"
        answers = await three(
            lambda: alice.post(cancel, json={"turn_id": slow}, headers=key), concurrent
        )
        assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
        assert len({a.json()["position"] for a in answers}) == 1
        counted = await settle(stack, session, 3)
        appended["cancel"] = await with_key(stack, session, f"cancel:stop-{tag}")
        assert counted["cancel_requested"] == 1 and counted["turn_cancelled"] == 1

        # fork: one new session, its copies once
        key = {"Idempotency-Key": f"fork-{tag}"}
        version = (await stack.store.head(session)).version
        fork = f"/v1/sessions/{session}/fork"
        answers = await three(
            lambda: alice.post(fork, json={"version": version}, headers=key), concurrent
        )
        assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        fork_id = answers[0].json()["id"]
        forked = await stack.store.load(fork_id)
        keys = [r.envelope.key for r in forked]
        assert len(keys) == len(set(keys)) and len(forked) > 10  # every copy once
        appended["fork"] = Counter(r.kind for r in forked)["session_started"]
        # the agent answers a new question in the fork, never the copied ones (it once
        # re-answered a copied turn it caught before the copy of its end was written)
        new_turn = await stack.say(fork_id, "and now?")
        await stack.until_terminal(fork_id, new_turn)
        forked = await stack.store.load(fork_id)
        strays = [
            (r.kind, r.envelope.key)
            for r in forked[1:]
            if not is_fork_copy(r.envelope) and r.turn != new_turn
        ]
        assert not strays, strays
        ends = Counter(r.turn for r in forked if r.kind in TERMINAL_KINDS)
        assert set(ends.values()) == {1}, ends

        # /api/chat: one user_message for the UIMessage id, one turn, streamed to each retry
        chat_id = f"chat-{tag}"
        part = {"type": "text", "text": "q"}
        chat = {"id": chat_id, "messages": [{"id": f"m-{tag}", "role": "user", "parts": [part]}]}
        answers = await three(lambda: alice.post("/api/chat", json=chat), concurrent)
        assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
        starts = {_start_of(a.text) for a in answers}
        assert len(starts) == 1, starts  # every retry streams the same turn
        counted = await settle(stack, answers[0].headers["x-threadline-session"], 1)
        appended["/api/chat"] = counted["user_message"]
        assert counted["session_started"] == 1 and counted["turn_completed"] == 1

    assert appended == dict.fromkeys(appended, 1), appended
    figure(
        f"{mode}, {RETRIES} tries each: events appended per endpoint "
        + ", ".join(f"{name} {n}" for name, n in appended.items())
    )


async def _until_streaming(stack: Stack, session: str, turn: str) -> None:
    async with asyncio.timeout(30):
        async for rec in stack.store.follow(session):
            if rec.turn == turn and rec.kind == "text_delta":
                return


def _start_of(stream: str) -> str:
    """The ``messageId`` of an AI SDK stream's ``start`` chunk (the turn)."""
    for line in stream.splitlines():
        if line.startswith("data: {"):
            chunk = json.loads(line.removeprefix("data: "))
            if chunk.get("type") == "start":
                return str(chunk["messageId"])
    raise AssertionError(f"no start chunk in {stream[:200]!r}")


async def test_the_agent_never_answers_a_forks_copies(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """A fork is appended event by event; the agent sees each copied user message as it
    lands, before the copy of its turn's end. It must not answer it (found by the fork
    retries above: a copied turn was sometimes answered a second time)."""
    async with running_stack(nats_server.url, tmp_path) as stack:
        source = await stack.new_session()
        turn = await stack.say(source, "hello")
        await stack.until_terminal(source, turn)
        records = await stack.store.load(source)
        fork = "fork-copies-" + uuid.uuid4().hex[:8]
        started = NewEvent(event=records[0].event, actor="user:alice", key="fork/x")
        copies = [
            NewEvent(
                event=r.event, actor=r.envelope.actor, turn=r.turn, attempt=r.attempt,
                key=f"copy-{r.version}",
                copied_from=ForkOrigin(session=source, version=r.version),
            )
            for r in records[1:]
        ]  # fmt: skip
        # the copied question alone, as the agent may see it mid-fork
        await stack.store.append(fork, [started, copies[0]], expected_version=0)
        # a question in another session, delivered after the copy: once it is answered,
        # the agent has long handled the copy (answering it would start with turn_started)
        other = await stack.new_session()
        await stack.until_terminal(other, await stack.say(other, "meanwhile"))
        assert (await stack.store.head(fork)).version == 2, "the agent wrote into the fork"
        await stack.store.append(fork, copies[1:], expected_version=2)  # the rest of the copy
        asked = await stack.say(fork, "a real question")
        events = await stack.until_terminal(fork, asked)
        assert events[-1].kind == "turn_completed"
        strays = [
            r.kind
            for r in await stack.store.load(fork)
            if r.turn == turn and not is_fork_copy(r.envelope)
        ]
        assert not strays, f"the copied question was answered: {strays}"
