"""Idempotency that outlives the duplicate window: on a real nats-server whose stream
forgets message ids after one second, a retried create, message, cancel or fork appends
nothing, from the same gateway (a warm session cache) or from a fresh one (cold). The
window is known to have passed when the server stores a repeated message id again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.agent.longsession import build_session
from tests.conftest import fresh_stream
from tests.events.test_contract import FakeClock
from tests.events.test_sessions import CountingStore
from tests.support.window import window_passed
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TurnCancelled, TurnStarted
from threadline.events.store import EventStore, NewEvent
from threadline.services.commands import (
    CancelTurn,
    Fork,
    SendMessage,
    SessionCommands,
    StartSession,
)
from threadline.services.commands.keys import DerivedIds

ALICE = "user:alice"


@pytest.fixture
async def store(nats_url: str) -> AsyncIterator[JetStreamEventStore]:
    # a window this short is below what a production stream may have: allowed in tests
    settings = fresh_stream(duplicate_window_s=1.0)
    store = await JetStreamEventStore.connect(nats_url, settings, allow_unsafe=True)
    yield store
    await store.close()


async def heads(store: EventStore, *sessions: str) -> list[int]:
    return [(await store.head(s)).version for s in sessions]


Fresh = Callable[[], SessionCommands]
#: the deployment's derived ids: every gateway of it derives the same
IDS = DerivedIds(b"the deployment's secret")


@pytest.fixture
def fresh(store: JetStreamEventStore) -> Fresh:
    """Another gateway's commands: a cold session cache."""
    return lambda: SessionCommands(store, ids=IDS)


async def test_create_and_message_retried_after_the_window(
    store: JetStreamEventStore, fresh: Fresh
) -> None:
    commands = SessionCommands(store, ids=IDS)
    create = StartSession(owner="alice", actor=ALICE, title="t", key="create-1")
    made = await commands.create_session(create)
    send = SendMessage(session=made.session, actor=ALICE, text="hi", key="msg-1")
    sent = await commands.post_message(send)
    await window_passed(store)
    for cmds in (commands, fresh()):
        assert await cmds.create_session(create) == made
        assert await cmds.post_message(send) == sent
    assert await heads(store, made.session) == [2]


async def test_cancel_retried_after_the_window(store: JetStreamEventStore, fresh: Fresh) -> None:
    commands = SessionCommands(store, ids=IDS)
    session = (await commands.create_session(StartSession(owner="alice", actor=ALICE))).session
    turn = (await commands.post_message(SendMessage(session=session, actor=ALICE, text="q"))).turn
    assert turn is not None
    cancel = CancelTurn(session=session, actor=ALICE, reason="enough", key="stop-1")
    asked = await commands.cancel(cancel)
    await window_passed(store)
    assert await commands.cancel(cancel) == asked  # the turn still waits to stop
    # the turn has ended meanwhile: the retry is still answered, not refused
    started = TurnStarted(turn_id=turn, attempt=1, provider="dev", model="m")
    ended = TurnCancelled(reason="enough")
    await store.append(
        session,
        [NewEvent(event=e, turn=turn, attempt=1, actor="agent:w") for e in (started, ended)],
    )
    version = (await store.head(session)).version
    for cmds in (commands, fresh()):
        assert await cmds.cancel(cancel) == asked
    assert await heads(store, session) == [version]


async def test_fork_retried_after_the_window(store: JetStreamEventStore, fresh: Fresh) -> None:
    await build_session(store, "source", 3)
    fork = Fork(source="source", version=13, actor=ALICE, key="fork-1")
    commands = SessionCommands(store, ids=IDS)
    made = await commands.fork(fork)
    await window_passed(store)
    for cmds in (commands, fresh()):
        assert await cmds.fork(fork) == made
    assert await heads(store, made.session) == [made.version]


async def test_a_retry_costs_what_happened_since_not_the_session() -> None:
    """On a 1,000-turn session, a retried message reads only the events since the
    command layer last read the session (none here), whatever the window says."""
    clock = FakeClock()
    store = CountingStore(clock=clock, duplicate_window_s=1.0)
    await build_session(store, "long", 1000)
    commands = SessionCommands(store, ids=IDS)
    send = SendMessage(session="long", actor=ALICE, text="again?", key="k-1000")
    sent = await commands.post_message(send)
    clock.now += 1.0  # the store has forgotten every message id
    store.reads()
    assert await commands.post_message(send) == sent
    assert store.reads() == 1  # the message itself, new to the cache
    assert (await store.head("long")).version == sent.version
