"""The fork command on the in-memory store, and how a fork's copies are marked: in the
envelope (``copied_from``), with the keys of older copies (``~fork``) still recognised."""

from __future__ import annotations

import asyncio

import pytest
from msgspec.structs import replace

from tests.projections.helpers import rich_session
from threadline.base.errors import IdempotencyKeyReused, InvalidField, SessionNotFound
from threadline.events import codec
from threadline.events.fold import fold
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import ForkOrigin, SessionStarted, UserMessage, is_fork_copy
from threadline.events.store import NewEvent
from threadline.services.commands import Catalog, Fork, ProviderEntry, SessionCommands

CATALOG = Catalog(
    [
        ProviderEntry(name="openai", models=("gpt-x", "gpt-y"), default_model="gpt-x"),
        ProviderEntry(name="anthropic", models=("claude-x",), default_model="claude-x"),
    ],
    [],
)


@pytest.fixture
async def store() -> MemoryEventStore:
    store = MemoryEventStore()
    await store.append("src", rich_session())  # alice's; t2 completes at v19
    return store


@pytest.mark.parametrize("concurrent", [False, True])
async def test_a_fork_retried_three_times_with_a_key_is_one_fork(
    store: MemoryEventStore, concurrent: bool
) -> None:
    commands = SessionCommands(store, CATALOG)
    fork = Fork(source="src", version=19, actor="user:bob", owner="bob", key="f-1")
    if concurrent:
        answers = await asyncio.gather(*(commands.fork(fork) for _ in range(3)))
    else:
        answers = [await commands.fork(fork) for _ in range(3)]
    assert len(set(answers)) == 1
    forked = await store.load(answers[0].session)
    assert answers[0] == forked[-1] and len(forked) == 16
    first = forked[0].event
    assert isinstance(first, SessionStarted) and first.owner == "bob"
    assert first.forked_from == ForkOrigin(session="src", version=19)
    assert fold(forked).committed == fold((await store.load("src"))[:19]).committed
    # the same key for another fork is refused, and appends nothing
    before = await store.last_position()
    for other in (Fork(source="src", version=11, actor="user:bob", owner="bob", key="f-1"),
                  Fork(source="src", version=19, actor="user:bob", owner="bob", key="f-1",
                       model="gpt-y")):  # fmt: skip
        with pytest.raises(IdempotencyKeyReused):
            await commands.fork(other)
    assert await store.last_position() == before
    # another owner's key is another fork
    alices = await commands.fork(Fork(source="src", version=19, actor="user:alice", key="f-1"))
    assert alices.session != answers[0].session


async def test_copies_say_what_they_copy_and_the_agent_and_views_can_tell(
    store: MemoryEventStore,
) -> None:
    last = await SessionCommands(store).fork(Fork(source="src", version=28, actor="system"))
    forked = await store.load(last.session)
    source = {rec.version: rec for rec in await store.load("src")}
    assert not is_fork_copy(forked[0].envelope)
    for copy in forked[1:]:
        origin = copy.envelope.copied_from
        assert origin is not None and origin.session == "src" and is_fork_copy(copy.envelope)
        original = source[origin.version]
        assert (copy.event, copy.turn, copy.attempt) == (
            original.event, original.turn, original.attempt,
        )  # fmt: skip
    copied = {c.envelope.copied_from for c in forked[1:]}
    superseded = {r.version for r in source.values() if r.turn == "t2" and r.attempt == 1}
    assert len(superseded) == 3  # t2's first attempt: not copied
    assert not {ForkOrigin(session="src", version=v) for v in superseded} & copied


async def test_the_forks_provider_and_model_are_checked(store: MemoryEventStore) -> None:
    commands = SessionCommands(store, CATALOG)

    async def first(version: int = 11, **given: str) -> SessionStarted:
        last = await commands.fork(Fork(source="src", version=version, actor="system", **given))
        event = (await store.load(last.session))[0].event
        assert isinstance(event, SessionStarted)
        return event

    assert ((e := await first()).provider, e.model) == ("openai", "gpt-x")  # the source's
    assert (await first(model="gpt-y")).model == "gpt-y"
    assert ((e := await first(provider="anthropic")).provider, e.model) == (
        "anthropic", "claude-x",
    )  # fmt: skip
    before = await store.last_position()
    for given, field in [
        ({"provider": "nope"}, "provider"),
        ({"model": "claude-x"}, "model"),  # not a model of the source's provider
        ({"provider": "anthropic", "model": "gpt-x"}, "model"),
    ]:
        with pytest.raises(InvalidField) as refused:
            await first(**given)
        assert refused.value.field == field
    with pytest.raises(InvalidField, match="no version 29") as refused:
        await first(version=29)
    assert await store.last_position() == before
    only_anthropic = Catalog([ProviderEntry(name="anthropic")], [])
    with pytest.raises(InvalidField) as refused:  # the source's provider is not offered
        await SessionCommands(store, only_anthropic).fork(
            Fork(source="src", version=11, actor="system", model="any")
        )
    assert refused.value.field == "provider"
    with pytest.raises(SessionNotFound):
        await commands.fork(Fork(source="missing", version=1, actor="system"))


def test_old_copies_keyed_with_the_suffix_are_still_copies() -> None:
    """Records forks wrote before ``copied_from`` (keys ending ``~fork``) decode as they
    are and are copies; the new field encodes only when set, so old bytes stay the same."""
    old = (
        b'{"schema":1,"session":"f","version":2,"at":1,"actor":"user:alice",'
        b'"key":"message:q~fork","prev":"00","event":{"kind":"user_message","text":"hi"},'
        b'"turn":"t1"}'
    )
    envelope = codec.decode(old)
    assert envelope.copied_from is None and is_fork_copy(envelope)
    assert codec.encode(envelope) == old
    asked = replace(envelope, key="message:q")
    assert not is_fork_copy(asked)
    origin = ForkOrigin(session="s", version=7)
    marked = codec.decode(codec.encode(replace(asked, copied_from=origin)))
    assert marked.copied_from == origin and is_fork_copy(marked)


async def test_a_copy_is_stored_with_its_mark(store: MemoryEventStore) -> None:
    copy = NewEvent(
        event=UserMessage(text="hi"),
        turn="t1",
        key="copy/src/2",
        copied_from=ForkOrigin(session="src", version=2),
    )
    (rec,) = await store.append("dst", copy)
    assert codec.decode(rec.raw) == rec.envelope
    assert b'"copied_from":{"session":"src","version":2}' in rec.raw
