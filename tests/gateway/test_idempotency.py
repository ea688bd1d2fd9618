"""Retried POSTs append nothing new and answer the same."""

from __future__ import annotations

import asyncio

from tests.gateway.harness import Harness, agent_turn
from threadline.events.schema import TurnCancelled
from threadline.events.store import NewEvent


async def test_three_retries_of_a_message_append_one_event(gw: Harness) -> None:
    session = await gw.new_session()
    before = await gw.version(session)
    headers = {"Idempotency-Key": "msg-0001"}
    url = f"/v1/sessions/{session}/messages"
    answers = [await gw.alice.post(url, json={"text": "once"}, headers=headers) for _ in range(3)]
    assert {a.status_code for a in answers} == {202}
    assert len({(a.json()["turn_id"], a.json()["position"]) for a in answers}) == 1
    assert await gw.version(session) == before + 1


async def test_concurrent_retries_append_one_event(gw: Harness) -> None:
    session = await gw.new_session()
    before = await gw.version(session)
    url = f"/v1/sessions/{session}/messages"
    body = {"text": "at once", "client_message_id": "cm-42"}  # the body's id is the key too
    answers = await asyncio.gather(*(gw.alice.post(url, json=body) for _ in range(3)))
    assert len({(a.status_code, a.text) for a in answers}) == 1
    assert await gw.version(session) == before + 1


async def test_a_reused_key_with_a_different_request_is_refused(gw: Harness) -> None:
    session = await gw.new_session()
    url = f"/v1/sessions/{session}/messages"
    headers = {"Idempotency-Key": "k-1"}
    assert (await gw.alice.post(url, json={"text": "first"}, headers=headers)).status_code == 202
    version = await gw.version(session)
    other = await gw.alice.post(url, json={"text": "second"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"] == {
        "type": "idempotency_key_reused",
        "message": "this Idempotency-Key was already used for a different request",
        "field": "Idempotency-Key",
    }
    assert await gw.version(session) == version


async def test_three_retries_of_a_create_make_one_session(gw: Harness) -> None:
    headers = {"Idempotency-Key": "create-abc"}
    answers = [
        await gw.alice.post("/v1/sessions", json={"title": "t"}, headers=headers) for _ in range(3)
    ]
    assert {a.status_code for a in answers} == {201}
    assert len({a.text for a in answers}) == 1
    session = answers[0].json()["id"]
    assert await gw.version(session) == 1
    # the same key from another owner is another session
    theirs = await gw.bob.post("/v1/sessions", json={"title": "t"}, headers=headers)
    assert theirs.status_code == 201 and theirs.json()["id"] != session


async def test_three_retries_of_a_cancel_append_one_event_even_after_the_turn_ends(
    gw: Harness,
) -> None:
    session = await gw.new_session()
    posted = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "go"})
    turn = posted.json()["turn_id"]
    await agent_turn(gw.store, session, turn, end=False)
    headers = {"Idempotency-Key": "stop-1"}
    url = f"/v1/sessions/{session}/cancel"
    first = await gw.alice.post(url, headers=headers)
    assert first.status_code == 202 and first.json()["turn_id"] == turn
    cancelled = NewEvent(event=TurnCancelled(reason="user"), turn=turn, attempt=1)
    (ended,) = await gw.store.append(session, cancelled)  # the agent stops the turn
    retries = [await gw.alice.post(url, headers=headers) for _ in range(2)]
    assert [r.json() for r in retries] == [first.json()] * 2
    assert await gw.version(session) == ended.version
    kinds = [r.kind for r in await gw.store.load(session)]
    assert kinds.count("cancel_requested") == 1


async def test_a_cancel_key_reused_for_another_request_is_refused(gw: Harness) -> None:
    """Like every command, a cancel's key names one request (it used to answer the first
    request whatever the second asked)."""
    session = await gw.new_session()
    posted = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "go"})
    turn = posted.json()["turn_id"]
    url = f"/v1/sessions/{session}/cancel"
    headers = {"Idempotency-Key": "stop-2"}
    first = await gw.alice.post(url, json={"turn_id": turn}, headers=headers)
    assert first.status_code == 202
    version = await gw.version(session)
    other = await gw.alice.post(url, json={"turn_id": turn, "reason": "other"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"] == {
        "type": "idempotency_key_reused",
        "message": "this Idempotency-Key was already used for a different request",
        "field": "Idempotency-Key",
    }
    unknown = await gw.alice.post(url, json={"turn_id": "no-such-turn"})
    assert unknown.status_code == 404 and unknown.json()["error"] == {
        "type": "turn_not_found",
        "message": "the session has no turn 'no-such-turn'",
        "field": "turn_id",
    }
    assert await gw.version(session) == version
