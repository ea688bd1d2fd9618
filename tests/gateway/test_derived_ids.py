"""Session ids derived from an owner's key can't be computed, taken first or probed by
another owner (issue 12, item 1).

Before, a keyed create's id was ``sha256(owner \\0 key)``, a keyed fork's
``sha256(owner \\0 fork:key)`` and an AI SDK chat's ``ai-`` + ``sha256(aisdk \\0 owner
\\0 chat)``; ``POST /api/chat`` created a session under any valid id it was given and
answered 404 for another owner's: a stranger could compute an id, take it first, and
tell which ids exist."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.aisdk.test_usechat import body, chat_id, user
from tests.gateway.harness import Harness, agent_turn
from threadline.base.config import Settings
from threadline.events.schema import SessionStarted
from threadline.services.commands.keys import DerivedIds


def computed(*parts: str) -> str:
    """What anyone could compute before: a plain digest of the parts."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@contextlib.asynccontextmanager
async def chatting(client: httpx.AsyncClient, chat: str) -> AsyncIterator[httpx.Response]:
    """``POST /api/chat`` with a first message; yields the response (its stream unread:
    no agent answers in this module)."""
    async with client.stream("POST", "/api/chat", json=body(chat, user("hi"))) as response:
        yield response


async def owner_of(gw: Harness, session: str) -> str:
    started = (await gw.store.load(session))[0].event
    assert isinstance(started, SessionStarted)
    return started.owner


async def test_a_stranger_cannot_take_a_keyed_creates_id_first(gw: Harness) -> None:
    key = f"create-{chat_id()}"
    async with chatting(gw.bob, computed("alice", key)) as squat:
        assert squat.status_code == 200
        assert squat.headers["x-threadline-session"] != computed("alice", key)
    created = await gw.alice.post("/v1/sessions", json={}, headers={"Idempotency-Key": key})
    assert created.status_code == 201, created.text
    assert await owner_of(gw, created.json()["id"]) == "alice"


async def test_a_stranger_cannot_take_a_keyed_forks_id_first(gw: Harness) -> None:
    source = await gw.new_session()
    posted = await gw.alice.post(f"/v1/sessions/{source}/messages", json={"text": "q"})
    await agent_turn(gw.store, source, posted.json()["turn_id"])
    key = f"fork-{chat_id()}"
    async with chatting(gw.bob, computed("alice", f"fork:{key}")) as squat:
        assert squat.status_code == 200
    version = await gw.version(source)
    url = f"/v1/sessions/{source}/fork"
    forked = await gw.alice.post(url, json={"version": version}, headers={"Idempotency-Key": key})
    assert forked.status_code == 201, forked.text
    assert await owner_of(gw, forked.json()["id"]) == "alice"


async def test_a_stranger_cannot_take_a_chats_session_first(gw: Harness) -> None:
    chat = f"alice's chat {chat_id()}"  # not a session id: mapped to a derived one
    async with chatting(gw.bob, f"ai-{computed('aisdk', 'alice', chat)}") as squat:
        assert squat.status_code == 200
    async with chatting(gw.alice, chat) as mine:
        assert mine.status_code == 200
        assert await owner_of(gw, mine.headers["x-threadline-session"]) == "alice"


async def test_api_chat_tells_nothing_about_other_owners_sessions(gw: Harness) -> None:
    alices = await gw.new_session(title="private")
    before = await gw.version(alices)
    resumed = [await gw.bob.get(f"/api/chat/{c}/stream") for c in (alices, "x")]
    assert [(r.status_code, r.content) for r in resumed] == [(204, b""), (204, b"")]
    cancels = [await gw.bob.post(f"/api/chat/{c}/cancel") for c in (alices, "x")]
    assert [r.status_code for r in cancels] == [404, 404]
    assert cancels[0].json() == cancels[1].json()
    answers = []
    for chat in (alices, chat_id()):  # another owner's session, then an unknown id
        async with chatting(gw.bob, chat) as response:
            answers.append(response.status_code)
            session = response.headers.get("x-threadline-session", "")
        assert session != chat and await owner_of(gw, session) == "bob"  # bob's own chat
    assert answers == [200, 200]
    assert await gw.version(alices) == before
    # the owner's own session id is their chat
    async with chatting(gw.alice, alices) as response:
        assert response.headers["x-threadline-session"] == alices


def test_derived_ids_depend_on_the_deployments_secret(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    secret = settings.id_key()
    assert secret == Settings(data_dir=str(tmp_path)).id_key()  # kept in the data dir
    assert (tmp_path / "id-secret").stat().st_mode & 0o077 == 0
    ids, other = DerivedIds(secret), DerivedIds(Settings(data_dir=str(tmp_path / "x")).id_key())
    assert ids.session("alice", "k") == ids.session("alice", "k") != other.session("alice", "k")
    assert ids.session("alice", "k") != computed("alice", "k")
    assert ids.chat("alice", "c") != ids.chat("bob", "c")
    assert DerivedIds(Settings(id_secret="s").id_key()).fork("a", "k") == DerivedIds(b"s").fork(
        "a", "k"
    )
