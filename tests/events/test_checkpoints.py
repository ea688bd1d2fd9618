"""Signed checkpoints end to end on a real nats-server (issue 14 item 2): sessions are
written, ``threadline checkpoint`` signs the log, then ``threadline verify --checkpoint``
fails for a deleted-and-republished stream with one answer rewritten (chain recomputed)
and for a truncated one, naming where, and passes for a log that grew legitimately."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats.js.errors
import pytest
from nats.js.api import DiscardPolicy

from tests.conftest import fresh_stream
from tests.projections.helpers import close, project_to_end
from threadline.base.config import Settings
from threadline.events import codec
from threadline.events.checkpoint import Checkpoint, decode_checkpoint
from threadline.events.checkpointer import (
    Checkpointer,
    DirectorySink,
    log_records,
    running_checkpointer,
)
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.keys import ensure_signing_key
from threadline.events.schema import AssistantMessage, SessionStarted, UserMessage
from threadline.events.store import QUARANTINED, NewEvent, Recorded, checkpoint_subject
from threadline.events.stream import ensure_stream
from threadline.events.verify import verify_session
from threadline.projections import status
from threadline.projections.config import ProjectorConfig
from threadline.projections.projector import raw_events
from threadline.services.cli import checkpoint as checkpoint_cmd
from threadline.services.cli import verify as verify_cmd
from threadline.services.cli.main import build_parser


@pytest.fixture
async def log(nats_url: str) -> AsyncIterator[JetStreamEventStore]:
    store = await JetStreamEventStore.connect(
        nats_url, fresh_stream(), heartbeat_s=0.5, allow_unsafe=True
    )
    yield store
    await store.close()


def settings_for(store: JetStreamEventStore, data: Path, url: str) -> Settings:
    return Settings(
        data_dir=str(data), nats_url=url, stream=store.settings.name, prefix=store.prefix
    )


async def chat(store: JetStreamEventStore, session: str, turns: int) -> None:
    await store.append(session, NewEvent(event=SessionStarted(owner="alice")))
    for n in range(turns):
        turn = f"t{n}"
        await store.append(
            session,
            [
                NewEvent(event=UserMessage(text=f"question {n}"), actor="user:alice", turn=turn),
                NewEvent(event=AssistantMessage(text=f"answer {n}"), turn=turn, attempt=1),
            ],
        )


def args(*argv: str) -> argparse.Namespace:
    return build_parser(argv[0]).parse_args(list(argv))


async def checkpoint(settings: Settings, capsys: pytest.CaptureFixture[str]) -> Path:
    assert await checkpoint_cmd.run(args("checkpoint"), settings) == 0
    out = capsys.readouterr().out
    return Path(out.rsplit("written to the log and to ", 1)[1].strip())


async def verify(
    settings: Settings, file: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    code = await verify_cmd.run(args("verify", "--checkpoint", str(file), *extra), settings)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
async def checkpointed(
    log: JetStreamEventStore, nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Settings, Path]:
    for session, turns in (("s-one", 5), ("s-two", 6), ("s-three", 4)):
        await chat(log, session, turns)
    settings = settings_for(log, tmp_path, nats_url)
    return settings, await checkpoint(settings, capsys)


async def test_the_key_is_owner_only_and_the_checkpoint_is_in_the_log_and_the_directory(
    log: JetStreamEventStore, checkpointed: tuple[Settings, Path]
) -> None:
    settings, file = checkpointed
    key = settings.data_path / "keys" / "checkpoint.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key.parent).st_mode) == 0o700
    signed = decode_checkpoint(file.read_bytes())
    assert signed.size == 3 * 1 + 2 * (5 + 6 + 4)
    records = [r async for r in log_records(log)]
    assert records[-1].subject == f"{log.prefix}._log.checkpoint"
    assert decode_checkpoint(records[-1].data) == signed
    assert json.loads(file.read_text())["kind"] == "checkpoint"


async def test_a_log_that_grew_passes_with_inclusion_proofs(
    log: JetStreamEventStore,
    checkpointed: tuple[Settings, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, file = checkpointed
    await chat(log, "s-four", 3)
    await log.append("s-two", NewEvent(event=UserMessage(text="later"), turn="t9"))
    code, out = await verify(settings, file, capsys, "--session", "s-two")
    assert code == 0, out
    assert "OK: the log extends the checkpoint (consistency proof from 33 to 42" in out
    assert "session s-two: 13 events proven in the checkpoint (inclusion proofs), 1 after it" in out
    # and a second checkpoint over the grown log verifies too (the checkpointer resumes)
    second = await checkpoint(settings, capsys)
    code, out = await verify(settings, second, capsys)
    assert code == 0, out


async def test_a_deleted_and_republished_stream_with_an_answer_rewritten_fails(
    log: JetStreamEventStore,
    checkpointed: tuple[Settings, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, file = checkpointed
    records = [r async for r in log_records(log)]
    js = log.nc.jetstream()
    await js.delete_stream(log.settings.name)
    await ensure_stream(log.nc, log.settings)
    prev: dict[str, str] = {}
    rewritten_at = None
    for stored in records:
        data = stored.data
        if not stored.subject.endswith("._log.checkpoint"):
            env = codec.decode(data)
            if env.session == "s-two" and env.version == 5:  # answer 1 of s-two
                env = msgspec.structs.replace(env, event=AssistantMessage(text="I never said so"))
                rewritten_at = stored.position
            if env.session in prev:
                env = msgspec.structs.replace(env, prev=prev[env.session])
            data = codec.encode(env)
            prev[env.session] = codec.record_hash(data)
        await js.publish(stored.subject, data, stream=log.settings.name)
    # the hash chain alone cannot tell: it was recomputed
    raw = log.follow_raw([f"{log.prefix}.s-two.*"], until_end=True)
    assert (await verify_session("s-two", raw)).ok

    code, out = await verify(settings, file, capsys, "--session", "s-two")
    assert code == 1
    assert "TAMPERED: the log's first 33 records are not the ones the checkpoint signed" in out
    index = rewritten_at - 1  # type: ignore[operator]
    assert (
        f"first differing record: leaf {index}, stream sequence {rewritten_at} "
        f"(session s-two, version 5; stream sequence {rewritten_at} at the checkpoint)"
    ) in out
    # v1..v4 of s-two are proven in the checkpoint's tree (its kept leaves); v5.. are not
    assert (
        "session s-two: 9 record(s) are not in the checkpoint's tree, the first at stream "
        f"sequence {rewritten_at}" in out
    )
    # and the checkpointer does not sign over the rewritten history
    assert await checkpoint_cmd.run(args("checkpoint"), settings) == 1
    assert "refusing to sign over it" in capsys.readouterr().err


async def test_a_truncated_stream_fails(
    log: JetStreamEventStore,
    checkpointed: tuple[Settings, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, file = checkpointed
    js = log.nc.jetstream()
    info = await js.stream_info(log.settings.name)
    info.config.max_msgs, info.config.discard = 20, DiscardPolicy.OLD
    await js.update_stream(info.config)
    assert len([r async for r in log_records(log)]) == 20

    code, out = await verify(settings, file, capsys)
    assert code == 1
    assert "the log holds 20 records, the checkpoint 33" in out
    assert "the log now starts at stream sequence 15" in out
    assert "the records before 15 are gone (truncated)" in out
    assert "first differing record: leaf 0, stream sequence 15" in out


async def test_a_checkpoint_signed_by_another_key_or_altered_is_refused(
    checkpointed: tuple[Settings, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, file = checkpointed
    other = tmp_path / "other" / "key"
    ensure_signing_key(other)
    code, out = await verify(settings, file, capsys, "--trusted-key", f"{other}.pub")
    assert code == 1 and "which is not a trusted key" in out
    altered = tmp_path / "altered.json"
    altered.write_text(file.read_text().replace('"size":33', '"size":32'))
    code, out = await verify(settings, altered, capsys)
    assert code == 1 and "its signature does not verify" in out


async def test_the_checkpointer_signs_periodically_when_the_log_changed(
    log: JetStreamEventStore, nats_url: str, tmp_path: Path
) -> None:
    settings = settings_for(log, tmp_path, nats_url)
    checkpointer = await checkpoint_cmd.make_checkpointer(settings, log)
    await chat(log, "s-one", 2)
    signed = log.follow_raw([checkpoint_subject(log.prefix)])
    async with running_checkpointer(checkpointer, 0.05), asyncio.timeout(20):
        first = decode_checkpoint((await anext(signed)).data)
        assert first.size == 5
        await chat(log, "s-two", 1)  # the next one covers the first checkpoint and s-two
        second = decode_checkpoint((await anext(signed)).data)
    async with asyncio.timeout(5):
        await signed.aclose()
    assert second.size == 5 + 1 + 3
    files = sorted(p.name for p in checkpoint_cmd.checkpoint_dir(settings).iterdir())
    assert files == ["checkpoint-000000000005.json", "checkpoint-000000000009.json", "leaves"]
    # nothing changed since but its own record: no further checkpoint (the first call
    # may finish the one the loop was stopped in)
    async with asyncio.timeout(5):
        await checkpointer.checkpoint()
    async with asyncio.timeout(5):
        assert await checkpointer.checkpoint() is None


async def test_without_kept_leaves_the_change_is_found_but_not_placed(
    log: JetStreamEventStore,
    checkpointed: tuple[Settings, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, file = checkpointed
    (file.parent / "leaves").unlink()
    js = log.nc.jetstream()
    info = await js.stream_info(log.settings.name)
    info.config.max_msgs, info.config.discard = 30, DiscardPolicy.OLD
    await js.update_stream(info.config)
    code, out = await verify(settings, file, capsys)
    assert code == 1
    assert "the records before 5 are gone (truncated)" in out
    assert "the first differing record cannot be named" in out


async def test_the_projector_and_session_readers_step_over_checkpoints(
    log: JetStreamEventStore, checkpointed: tuple[Settings, Path]
) -> None:
    """A checkpoint is no session's event: the projector's read hands it over (to move
    past, test_the_projector_counts_a_checkpoint_as_processed), session readers step over
    it, and it is never a quarantined record."""
    subjects = [s.subject async for s in raw_events(log, until_end=True)]
    assert len(subjects) == 34 and subjects[-1].endswith("._log.checkpoint")
    last = (await log.append("s-one", NewEvent(event=UserMessage(text="after"))))[0]
    quarantined = QUARANTINED.value()
    async with contextlib.aclosing(log.follow_all(after=30)) as tail:
        seen = [rec.position async for rec in _until(tail, last.position)]
    assert seen == [31, 32, 33, last.position] and last.position == 35
    assert QUARANTINED.value() == quarantined  # type: ignore[attr-defined]


async def _until(tail: AsyncIterator[Recorded], position: int) -> AsyncIterator[Recorded]:
    async for rec in tail:
        yield rec
        if rec.position >= position:
            return


class DroppingSink(DirectorySink):
    """A sink whose answer arrives just as its task is cancelled, awaited through
    ``asyncio.wait_for`` as nats-py awaits every reply: on Python 3.11 that returns the
    answer and drops the cancellation (what a request of the checkpointer's can meet)."""

    async def latest(self) -> Checkpoint | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Checkpoint | None] = loop.create_future()
        loop.call_soon(answer.set_result, await super().latest())
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return await asyncio.wait_for(answer, 5)


async def test_cancelling_the_checkpointer_ends_it_even_when_a_reply_drops_it(
    log: JetStreamEventStore, tmp_path: Path
) -> None:
    await chat(log, "s-one", 2)
    key = ensure_signing_key(tmp_path / "keys" / "checkpoint.key")
    checkpointer = Checkpointer(log, key, DroppingSink(tmp_path / "checkpoints"))
    task = asyncio.create_task(checkpointer.checkpoint(force=True))
    async with asyncio.timeout(10):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()  # not a checkpoint signed after all
    assert not (tmp_path / "checkpoints").exists()
    # and the periodic loop ends with it, instead of carrying on for ever
    checkpointer = Checkpointer(log, key, DroppingSink(tmp_path / "checkpoints"))
    running = asyncio.create_task(checkpointer.run(0.01, asyncio.Event()))
    async with asyncio.timeout(10):
        await asyncio.gather(running, return_exceptions=True)
    assert running.cancelled()


async def test_a_checkpoint_cancelled_at_any_point_ends_and_the_next_one_signs(
    log: JetStreamEventStore, checkpointed: tuple[Settings, Path]
) -> None:
    """Cancelled at every moment of its requests to NATS (a few each millisecond), a
    checkpoint ends cancelled; the next call on the same checkpointer carries on from
    where the read stopped, and signs (no false 'the log no longer extends')."""
    settings, _ = checkpointed
    for n in range(8):
        await chat(log, f"more-{n}", 40)
    cancelled = 0
    for step in range(16):
        checkpointer = await checkpoint_cmd.make_checkpointer(settings, log)
        size = await log.last_position()
        task = asyncio.create_task(checkpointer.checkpoint(force=True))
        await asyncio.sleep(step / 4000)  # where it is cancelled, not a wait for something
        if not task.cancel():
            continue  # it signed before
        cancelled += 1
        async with asyncio.timeout(10):
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled(), f"cancelled after {step / 4} ms, it went on and signed"
        async with asyncio.timeout(10):
            signed = await checkpointer.checkpoint(force=True)
        # at least the log as it was (a cancelled publish of the checkpoint may land)
        assert signed is not None and signed.size >= size
    assert cancelled


async def test_verifying_against_a_deleted_stream_says_so_and_creates_nothing(
    log: JetStreamEventStore,
    checkpointed: tuple[Settings, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, file = checkpointed
    js = log.nc.jetstream()
    await js.delete_stream(log.settings.name)
    code, out = await verify(settings, file, capsys, "--session", "s-two")
    assert code == 1
    assert f"TAMPERED: stream {log.settings.name} does not exist: the log the checkpoint " in out
    assert "nothing was created" in out
    code = await verify_cmd.run(args("verify", "s-two"), settings)
    assert code == 2 and "does not exist; nothing was created" in capsys.readouterr().err
    with pytest.raises(nats.js.errors.NotFoundError):  # still gone: neither created it
        await js.stream_info(log.settings.name)


async def test_the_projector_counts_a_checkpoint_as_processed(
    log: JetStreamEventStore, checkpointed: tuple[Settings, Path], tmp_path: Path
) -> None:
    """The newest record is a checkpoint: the views are not behind (lag 0), and the
    projector's position is the log's end, not the last session event's."""
    recorder, projector = await project_to_end(
        log, ProjectorConfig(sqlite_path=str(tmp_path / "views.sqlite3"))
    )
    try:
        last = await log.last_position()
        assert last == 34  # 33 records, then the checkpoint
        assert [(s.position, s.lag) for s in await status(log, recorder)] == [(last, 0)] * 2
        assert projector.positions == {"sessions": last, "usage": last}
        assert projector.events == 33  # the checkpoint is stepped over, not applied
    finally:
        await close(recorder)
