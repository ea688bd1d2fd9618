"""Owners see only their own sessions; admins read all.

The matrix of every route against every kind of caller (other owners, admins, bad
credentials) is tests/hardening/test_isolation_matrix.py."""

from __future__ import annotations

import pytest

from tests.gateway.harness import Harness, agent_turn


@pytest.fixture
async def alices_session(gw: Harness) -> str:
    """A session of alice's with a finished turn and a pending one (so cancel has a target)."""
    session = await gw.new_session(title="private")
    first = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "secret"})
    await agent_turn(gw.store, session, first.json()["turn_id"], deltas=("classified",))
    await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "pending"})
    return session


async def test_lists_are_per_owner_and_admin_reads_any_session(
    gw: Harness, alices_session: str
) -> None:
    position = (await gw.store.load(alices_session))[0].position
    for client, visible in ((gw.alice, True), (gw.bob, False), (gw.root, False)):
        page = await client.get("/v1/sessions", params={"wait_for": position, "limit": 200})
        assert (alices_session in {s["id"] for s in page.json()["sessions"]}) is visible
    detail = await gw.root.get(f"/v1/sessions/{alices_session}")
    assert detail.status_code == 200 and detail.json()["owner"] == "alice"


async def test_other_owner_gets_zero_events_from_the_stream(
    gw: Harness, alices_session: str
) -> None:
    url = f"/v1/sessions/{alices_session}/events"
    async with gw.bob.stream("GET", url) as response:
        body = await response.aread()
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert b"id:" not in body and b"data:" not in body
    assert not gw.gateway.hub.has_upstream(alices_session)


async def test_unauthenticated_requests_get_a_bearer_challenge(gw: Harness) -> None:
    response = await gw.client(None).get("/v1/sessions")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "unauthorized"
