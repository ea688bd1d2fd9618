"""``POST /v1/sessions/{id}/fork``: the fork's history (the fold, through either
gateway), the catalog and version checks, owner scoping, and idempotency
(``Idempotency-Key``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.gateway.views_harness import Pair, log_of, running_views_gateway
from tests.projections.helpers import rich_session
from threadline.events.schema import ForkOrigin, SessionStarted
from threadline.events.store import NewEvent
from threadline.services.commands import Fork, SessionCommands
from threadline.services.runtime.natsserver import EmbeddedNats

Json = dict[str, Any]


@pytest_asyncio.fixture(scope="module")
async def pair(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pair]:
    async with running_views_gateway(nats_server.url, tmp_path_factory.mktemp("fork")) as pair:
        yield pair


@pytest_asyncio.fixture(scope="module")
async def source(pair: Pair) -> str:
    """alice's session of four turns (28 events; t2 completes at v19)."""
    await pair.views.store.append("src-1", rich_session("alice", title="Weather"))
    return "src-1"


async def fork(
    pair: Pair, session: str, body: Json, token: str = "alice-token", **headers: str
) -> httpx.Response:
    return await pair.views.client(token).post(
        f"/v1/sessions/{session}/fork", json=body, headers=headers
    )


async def test_fork_over_http_then_its_history(pair: Pair, source: str) -> None:
    now = {"wait_for": await pair.views.store.last_position()}
    spent = (await pair.views.alice.get("/v1/usage", params=now)).json()["turns"]
    response = await fork(pair, source, {"version": 19, "model": "gpt-4.1"})
    assert response.status_code == 201, response.text
    made = response.json()
    new, position = made["id"], made["position"]
    stored = await pair.views.store.load(new)
    assert (made["version"], position) == (stored[-1].version, stored[-1].position)
    first = stored[0].event
    assert isinstance(first, SessionStarted) and first.forked_from == ForkOrigin(
        session=source, version=19
    )
    assert stored[0].envelope.actor == "user:alice"
    url = f"/v1/sessions/{new}"
    detail = (await pair.views.alice.get(url, params={"wait_for": position})).json()
    assert (detail["owner"], detail["provider"], detail["model"]) == ("alice", "openai", "gpt-4.1")
    assert detail["title"] == "Weather" and [t["turn_id"] for t in detail["turns"]] == ["t1", "t2"]
    as_of = (await pair.views.alice.get(f"/v1/sessions/{source}", params={"at": 19})).json()
    shown = [(m["role"], m["text"], m["turn_id"]) for m in detail["messages"]]
    assert shown == [(m["role"], m["text"], m["turn_id"]) for m in as_of["messages"]]
    from_log = await log_of(pair).alice.get(url)
    assert (await pair.views.alice.get(url)).content == from_log.content  # one reader
    listed = (await pair.views.alice.get("/v1/sessions", params={"limit": 200})).json()
    assert new in {s["id"] for s in listed["sessions"]}
    # the copied turns were spent in the source: the fork adds nothing to usage
    assert (await pair.views.alice.get("/v1/usage")).json()["turns"] == spent


async def test_provider_and_model_are_checked_against_the_catalog(pair: Pair, source: str) -> None:
    other = await fork(pair, source, {"version": 11, "provider": "ollama", "model": "qwen3"})
    assert other.status_code == 201, other.text
    first = (await pair.views.store.load(other.json()["id"]))[0].event
    assert isinstance(first, SessionStarted) and (first.provider, first.model) == (
        "ollama", "qwen3",
    )  # fmt: skip
    default = await fork(pair, source, {"version": 11, "provider": "openai"})
    first = (await pair.views.store.load(default.json()["id"]))[0].event
    assert isinstance(first, SessionStarted) and first.model == "gpt-4.1-mini"  # its default
    before = await pair.views.store.last_position()
    for body, field in [
        ({"version": 11, "provider": "nope"}, "provider"),
        ({"version": 11, "model": "nope"}, "model"),  # not a model of the source's provider
        ({"version": 11, "provider": "openai", "model": "nope"}, "model"),
        ({"version": 29}, "version"),  # the source has 28 events
        ({"version": 0}, "version"),
        ({"version": 11, "owner": "bob"}, "owner"),
    ]:
        refused = await fork(pair, source, body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["error"]["field"] == field, refused.text
    assert (await fork(pair, source, {})).status_code == 422
    assert await pair.views.store.last_position() == before, "a refused fork appended"


async def test_forks_are_owner_scoped(pair: Pair, source: str) -> None:
    before = await pair.views.store.last_position()
    theirs = await fork(pair, source, {"version": 11}, "bob-token")
    unknown = await fork(pair, "nope-1", {"version": 11}, "bob-token")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.content == unknown.content
    assert await pair.views.store.last_position() == before
    # an admin may read any session, so may fork it: the fork is the admin's
    admins = await fork(pair, source, {"version": 11}, "root-token")
    assert admins.status_code == 201, admins.text
    new = admins.json()["id"]
    wait = {"wait_for": admins.json()["position"]}
    assert (await pair.views.root.get(f"/v1/sessions/{new}", params=wait)).json()["owner"] == "root"
    assert (await pair.views.alice.get(f"/v1/sessions/{new}")).status_code == 404


async def test_retries_with_one_key_make_one_fork(pair: Pair, source: str) -> None:
    body = {"version": 19}
    answers = [await fork(pair, source, body, **{"Idempotency-Key": "fork-1"}) for _ in range(3)]
    assert {a.status_code for a in answers} == {201} and len({a.text for a in answers}) == 1
    new = answers[0].json()["id"]
    assert len(await pair.views.store.load(new)) == answers[0].json()["version"] == 16
    at_once = await asyncio.gather(
        *(fork(pair, source, body, **{"Idempotency-Key": "fork-2"}) for _ in range(3))
    )
    assert len({(a.status_code, a.text) for a in at_once}) == 1, [a.text for a in at_once]
    assert at_once[0].json()["id"] != new
    assert len(await pair.views.store.load(at_once[0].json()["id"])) == 16
    before = await pair.views.store.last_position()
    reused = await fork(pair, source, {"version": 11}, **{"Idempotency-Key": "fork-1"})
    assert reused.status_code == 409 and reused.json()["error"]["type"] == "idempotency_key_reused"
    key = {"Idempotency-Key": "fork-1"}
    other_model = await fork(pair, source, {"version": 19, "model": "gpt-4.1"}, **key)
    assert other_model.status_code == 409
    assert await pair.views.store.last_position() == before
    # the same key from another owner (an admin forking alice's session) is another fork
    admins = await fork(pair, source, body, "root-token", **{"Idempotency-Key": "fork-1"})
    assert admins.status_code == 201 and admins.json()["id"] != new


async def test_a_fork_stopped_half_way_is_completed_by_a_retry(pair: Pair, source: str) -> None:
    store = pair.views.store
    commands = SessionCommands(store)
    await commands.fork(Fork(source=source, version=28, actor="system", session="whole-1"))
    whole = await store.load("whole-1")
    half = [
        NewEvent(event=r.event, actor=r.envelope.actor, turn=r.turn, attempt=r.attempt,
                 key=r.envelope.key, copied_from=r.envelope.copied_from)
        for r in whole[:7]
    ]  # fmt: skip
    await store.append("half-1", half, expected_version=0)
    last = await commands.fork(Fork(source=source, version=28, actor="system", session="half-1"))
    assert last.session == "half-1"
    completed = await store.load("half-1")
    assert [(r.event, r.envelope.key, r.envelope.copied_from) for r in completed] == [
        (r.event, r.envelope.key, r.envelope.copied_from) for r in whole
    ]
    assert last == completed[-1]
