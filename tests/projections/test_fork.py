"""Forks (``threadline.services.commands``): a new session from another's finished turns
up to a version, on JetStream, through ``threadline fork`` and in the views."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.projections.cli import run_command, settings_for
from tests.projections.helpers import close, project_to_end, rich_session
from threadline.base.errors import ConcurrencyError, InvalidField, SessionNotFound
from threadline.events.conversation import AssistantTurn
from threadline.events.fold import fold
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import ForkOrigin, SessionStarted, is_fork_copy
from threadline.events.store import EventStore
from threadline.projections import ProjectionReader, session_at
from threadline.projections.config import ProjectorConfig
from threadline.services.cli import fork as fork_command
from threadline.services.commands import Fork, SessionCommands


async def fork_session(
    store: EventStore, source: str, version: int, actor: str = "system", **given: str
) -> str:
    """Fork with no catalog (as ``threadline fork`` does); the fork's id."""
    fork = Fork(source=source, version=version, actor=actor, **given)
    return (await SessionCommands(store).fork(fork)).session


async def test_fork_copies_finished_turns_up_to_the_version(js_store: JetStreamEventStore) -> None:
    source = await js_store.append("src", rich_session())
    new = await fork_session(
        js_store, "src", 11, provider="anthropic", model="claude-x", actor="user:alice"
    )
    forked = await js_store.load(new)
    first = forked[0]
    assert isinstance(first.event, SessionStarted) and first.envelope.actor == "user:alice"
    assert first.event.forked_from == ForkOrigin(session="src", version=11)
    assert (first.event.owner, first.event.provider, first.event.model) == (
        "alice", "anthropic", "claude-x",
    )  # fmt: skip
    copies, originals = forked[1:], source[1:11]
    assert [r.event for r in copies] == [r.event for r in originals]
    assert [(r.turn, r.attempt, r.envelope.actor) for r in copies] == [
        (r.turn, r.attempt, r.envelope.actor) for r in originals
    ]
    assert not {r.envelope.key for r in copies} & {r.envelope.key for r in originals}
    assert [r.envelope.copied_from for r in copies] == [
        ForkOrigin(session="src", version=r.version) for r in originals
    ]
    assert all(map(is_fork_copy, (r.envelope for r in copies)))
    assert not is_fork_copy(first.envelope)
    assert fold(forked).committed == (await session_at(js_store, "src", 11)).committed


async def test_a_turn_still_running_at_the_version_is_left_out(
    js_store: JetStreamEventStore,
) -> None:
    await js_store.append("src", rich_session())
    new = await fork_session(js_store, "src", 14)  # t2's first attempt is running at v14
    state = fold(await js_store.load(new))
    assert list(state.turns) == ["t1"] and state.in_flight is None and not state.pending
    assert len(await js_store.load(new)) == 11


async def test_fork_of_the_whole_session_drops_superseded_attempts(
    js_store: JetStreamEventStore,
) -> None:
    await js_store.append("src", rich_session())
    new = await fork_session(js_store, "src", 28, session="copy-1")
    assert new == "copy-1"
    forked = await js_store.load(new)
    assert len(forked) == 28 - 3  # t2's first attempt: started, a delta, a message
    source_state, fork_state = fold(await js_store.load("src")), fold(forked)
    assert fork_state.committed == source_state.committed
    assert {t: s.status for t, s in fork_state.turns.items()} == {
        t: s.status for t, s in source_state.turns.items()
    }
    assert await fork_session(js_store, "src", 28, session="copy-1") == "copy-1"  # a retry
    assert len(await js_store.load(new)) == 25
    with pytest.raises(ConcurrencyError):
        await fork_session(js_store, "src", 27, session="copy-1")  # that session exists


async def test_fork_errors(js_store: JetStreamEventStore) -> None:
    await js_store.append("src", rich_session()[:5])
    with pytest.raises(InvalidField, match="no version 6") as no_such:
        await fork_session(js_store, "src", 6)
    assert no_such.value.field == "version"
    with pytest.raises(InvalidField):
        await fork_session(js_store, "src", 0)
    with pytest.raises(SessionNotFound):
        await fork_session(js_store, "missing", 1)


async def test_fork_command_and_the_forked_session_in_the_views(
    js_store: JetStreamEventStore,
    nats_url: str,
    config: ProjectorConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await js_store.append("src", rich_session())
    settings = settings_for(js_store, nats_url, tmp_path)
    argv = ["src", "--at", "19", "--model", "gpt-y", "--id", "forked"]
    assert await run_command(fork_command, argv, settings) == 0
    captured = capsys.readouterr()
    assert captured.out == "forked\n" and "forked src at v19 into forked" in captured.err
    state = fold(await js_store.load("forked"))
    last = state.committed[-1]
    assert list(state.turns) == ["t1", "t2"]
    assert isinstance(last, AssistantTurn) and last.text == "A joke."
    recorder, _ = await project_to_end(js_store, config)
    page = await ProjectionReader(recorder).list_sessions("alice")
    (summary,) = [s for s in page.sessions if s.session == "forked"]
    assert (summary.forked_from, summary.forked_version, summary.model) == ("src", 19, "gpt-y")
    assert summary.turn_count == 2
    await close(recorder)


async def test_a_forks_copied_turns_are_not_counted_again_in_usage(
    js_store: JetStreamEventStore, config: ProjectorConfig
) -> None:
    await js_store.append("src", rich_session())
    await fork_session(js_store, "src", 28, session="mine", owner="bob", actor="user:bob")
    recorder, _ = await project_to_end(js_store, config)
    reader = ProjectionReader(recorder)
    assert (await reader.usage("alice")).turns == 4
    assert (await reader.usage("bob")).turns == 0  # copies: spent (and counted) in the source
    (mine,) = (await reader.list_sessions("bob")).sessions
    assert (mine.session, mine.turn_count) == ("mine", 4)
    await close(recorder)
