"""The command layer on the in-memory store: each command, retries that append once, a key
reused for another request refused with a typed error, and the rules about turns."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from threadline.base.errors import (
    IdempotencyKeyReused,
    InvalidField,
    NothingToCancel,
    SessionNotFound,
    TurnFinished,
    TurnNotFound,
)
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import (
    CancelRequested,
    SessionStarted,
    TurnCompleted,
    TurnStarted,
    UserMessage,
    is_fork_copy,
)
from threadline.events.store import NewEvent, Recorded
from threadline.services.commands import (
    CancelTurn,
    Catalog,
    Fork,
    ProviderEntry,
    Regenerate,
    Rename,
    SendMessage,
    SessionCommands,
    StartSession,
)

CATALOG = Catalog(
    [
        ProviderEntry(name="dev", models=("threadline-dev",), default_model="threadline-dev"),
        ProviderEntry(name="openai", models=("gpt-x", "gpt-y"), default_model="gpt-x"),
    ],
    ["threadline"],
)
ALICE = "user:alice"


@pytest.fixture
def store() -> MemoryEventStore:
    return MemoryEventStore()


@pytest.fixture
def commands(store: MemoryEventStore) -> SessionCommands:
    return SessionCommands(store, CATALOG)


async def started(commands: SessionCommands) -> str:
    rec = await commands.create_session(StartSession(owner="alice", actor=ALICE))
    return rec.session


async def kinds(store: MemoryEventStore, session: str) -> Counter[str]:
    return Counter(rec.kind for rec in await store.load(session))


async def run_turn(store: MemoryEventStore, session: str, turn: str, *, end: bool = True) -> None:
    """What the agent appends for a turn: its start, and its end unless ``end`` is False."""
    begun = TurnStarted(turn_id=turn, attempt=1, provider="dev", model="threadline-dev")
    events = [NewEvent(event=begun, actor="agent:w", turn=turn, attempt=1)]
    if end:
        events.append(NewEvent(event=TurnCompleted(), actor="agent:w", turn=turn, attempt=1))
    await store.append(session, events)


async def thrice(call: Callable[[], Awaitable[Recorded]], concurrent: bool) -> list[Recorded]:
    if concurrent:
        return list(await asyncio.gather(*(call() for _ in range(3))))
    return [await call() for _ in range(3)]


# ----------------------------------------------------------------------------- create


@pytest.mark.parametrize("concurrent", [False, True])
async def test_create_with_a_key_three_times_makes_one_session(
    commands: SessionCommands, store: MemoryEventStore, concurrent: bool
) -> None:
    start = StartSession(owner="alice", actor=ALICE, title="t", key="create-1")
    answers = await thrice(lambda: commands.create_session(start), concurrent)
    assert len(set(answers)) == 1
    session = answers[0].session
    assert await kinds(store, session) == {"session_started": 1}
    event = answers[0].event
    assert isinstance(event, SessionStarted) and (event.owner, event.title) == ("alice", "t")
    assert answers[0].envelope.key == "create:create-1"
    # another owner's key is another session
    bobs = StartSession(owner="bob", actor="user:bob", key="create-1")
    assert (await commands.create_session(bobs)).session != session
    # the same key for another request is refused, and appends nothing
    with pytest.raises(IdempotencyKeyReused):
        await commands.create_session(
            StartSession(owner="alice", actor=ALICE, title="other", key="create-1")
        )
    assert await kinds(store, session) == {"session_started": 1}


async def test_create_checks_the_catalog(
    commands: SessionCommands, store: MemoryEventStore
) -> None:
    for start, field in [
        (StartSession(owner="a", actor="user:a", provider="nope"), "provider"),
        (StartSession(owner="a", actor="user:a", provider="openai", model="nope"), "model"),
        (StartSession(owner="a", actor="user:a", model="nope"), "model"),
        (StartSession(owner="a", actor="user:a", tool_servers=("nope",)), "tool_servers"),
    ]:
        with pytest.raises(InvalidField) as refused:
            await commands.create_session(start)
        assert refused.value.field == field
    assert await store.last_position() == 0
    rec = await commands.create_session(StartSession(owner="a", actor="user:a", model="gpt-y"))
    assert isinstance(rec.event, SessionStarted) and rec.event.provider == "openai"
    # no catalog: an operator's command, taken as it is
    free = await SessionCommands(store).create_session(
        StartSession(owner="a", actor="system", provider="anything")
    )
    assert isinstance(free.event, SessionStarted) and free.event.provider == "anything"


# ----------------------------------------------------------------------------- messages


@pytest.mark.parametrize("concurrent", [False, True])
async def test_a_message_sent_three_times_with_a_key_is_one_turn(
    commands: SessionCommands, store: MemoryEventStore, concurrent: bool
) -> None:
    session = await started(commands)
    send = SendMessage(session=session, actor=ALICE, text="hi", key="m-1", client_message_id="m-1")
    answers = await thrice(lambda: commands.post_message(send), concurrent)
    assert len(set(answers)) == 1 and answers[0].turn
    assert answers[0].envelope.key == "message:m-1"
    assert await kinds(store, session) == {"session_started": 1, "user_message": 1}
    other = SendMessage(session=session, actor=ALICE, text="ho", key="m-1")
    with pytest.raises(IdempotencyKeyReused):
        await commands.post_message(other)
    # without a key every call is a new message
    plain = SendMessage(session=session, actor=ALICE, text="hi")
    assert (await commands.post_message(plain)).turn != (await commands.post_message(plain)).turn
    assert (await kinds(store, session))["user_message"] == 3


async def test_a_key_ending_like_an_old_fork_copy_is_still_a_question(
    commands: SessionCommands,
) -> None:
    """Copies were once told by keys ending ``~fork``, and old logs still say so; a
    client's key ending that way made the agent skip the message as a copy."""
    session = await started(commands)
    for key in ("q~fork", "x" * 300, "with space"):
        send = SendMessage(session=session, actor=ALICE, text=f"about {key[:5]}", key=key)
        rec = await commands.post_message(send)
        assert not is_fork_copy(rec.envelope), rec.envelope.key
        assert await commands.post_message(send) == rec  # still idempotent


# ----------------------------------------------------------------------------- cancel


@pytest.mark.parametrize("concurrent", [False, True])
async def test_a_cancel_retried_three_times_appends_once_even_after_the_turn_ends(
    commands: SessionCommands, store: MemoryEventStore, concurrent: bool
) -> None:
    session = await started(commands)
    turn = (await commands.post_message(SendMessage(session=session, actor=ALICE, text="go"))).turn
    assert turn is not None
    await run_turn(store, session, turn, end=False)
    stop = CancelTurn(session=session, actor=ALICE, key="stop-1")
    answers = await thrice(lambda: commands.cancel(stop), concurrent)
    assert len(set(answers)) == 1 and answers[0].turn == turn
    assert isinstance(answers[0].event, CancelRequested)
    await store.append(session, NewEvent(event=TurnCompleted(), turn=turn, attempt=1))
    assert await commands.cancel(stop) == answers[0]  # a retry, after the turn ended
    assert (await kinds(store, session))["cancel_requested"] == 1
    with pytest.raises(IdempotencyKeyReused):  # the same key for another request
        await commands.cancel(CancelTurn(session=session, actor=ALICE, key="stop-1", reason="x"))
    with pytest.raises(TurnFinished):  # without the key it is a new request
        await commands.cancel(CancelTurn(session=session, actor=ALICE, turn=turn))


async def test_cancel_targets_the_running_turn_else_the_oldest_waiting_one(
    commands: SessionCommands, store: MemoryEventStore
) -> None:
    session = await started(commands)
    with pytest.raises(NothingToCancel):
        await commands.cancel(CancelTurn(session=session, actor=ALICE))
    first, second = [
        (await commands.post_message(SendMessage(session=session, actor=ALICE, text=t))).turn
        for t in ("one", "two")
    ]
    assert first is not None and second is not None
    waiting = await commands.cancel(CancelTurn(session=session, actor=ALICE))
    assert waiting.turn == first  # nothing runs: the oldest waiting turn
    await run_turn(store, session, first)
    await run_turn(store, session, second, end=False)
    running = await commands.cancel(CancelTurn(session=session, actor=ALICE))
    assert running.turn == second
    # asked again without a key: answered with the request already made
    assert await commands.cancel(CancelTurn(session=session, actor=ALICE)) == running
    assert (await kinds(store, session))["cancel_requested"] == 2
    with pytest.raises(TurnNotFound):
        await commands.cancel(CancelTurn(session=session, actor=ALICE, turn="nope"))
    with pytest.raises(SessionNotFound):
        await commands.cancel(CancelTurn(session="missing", actor=ALICE))


# ----------------------------------------------------------------------------- regenerate


@pytest.mark.parametrize("concurrent", [False, True])
async def test_regenerate_asks_again_once_per_answer(
    commands: SessionCommands, store: MemoryEventStore, concurrent: bool
) -> None:
    session = await started(commands)
    again = Regenerate(session=session, actor=ALICE, text="q", key="m-1", client_message_id="m-1")
    sent = await commands.regenerate(again)  # never sent: this is its first answer
    assert sent.envelope.key == "message:m-1" and sent.turn is not None
    assert await commands.regenerate(again) == sent  # its answer has not ended: that one
    await run_turn(store, session, sent.turn)
    answers = await thrice(lambda: commands.regenerate(again), concurrent)
    assert len(set(answers)) == 1
    second = answers[0]
    assert second.turn is not None and second.turn != sent.turn
    assert second.envelope.key == f"regenerate:{sent.turn}"
    assert second.event == UserMessage(text="q", client_message_id="m-1")
    await run_turn(store, session, second.turn)
    third = await commands.regenerate(again)  # the latest ask, found by its client_message_id
    assert third.turn not in (sent.turn, second.turn)
    assert third.envelope.key == f"regenerate:{second.turn}"
    assert (await kinds(store, session))["user_message"] == 3


async def test_rename_sets_the_title_once_per_key_and_forks_keep_it(
    store: MemoryEventStore, commands: SessionCommands
) -> None:
    session = await started(commands)
    await commands.post_message(SendMessage(session=session, actor=ALICE, text="plan a trip\nnow"))
    assert (await commands.state(session)).title == "plan a trip"  # from the first message
    rename = Rename(session=session, actor=ALICE, title="Lisbon", key="r1")
    first = await commands.rename(rename)
    assert [await commands.rename(rename) for _ in range(2)] == [first, first]
    state = await commands.state(session)
    assert (state.title, state.named) == ("Lisbon", "Lisbon")
    assert (await kinds(store, session))["session_renamed"] == 1
    with pytest.raises(IdempotencyKeyReused):
        await commands.rename(Rename(session=session, actor=ALICE, title="Porto", key="r1"))
    fork = await commands.fork(Fork(source=session, version=state.version, actor=ALICE))
    assert (await commands.state(fork.session)).title == "Lisbon"
    with pytest.raises(SessionNotFound):
        await commands.rename(Rename(session="nope", actor=ALICE, title="x"))
