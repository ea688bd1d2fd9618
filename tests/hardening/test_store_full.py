"""Issue 12 item 10: a full store. JetStream's storage limit stands in for a full disk
(no root needed): the same refusals ("insufficient resources", 10023). Posts answer
503, ``/readyz`` reports that appends fail, and once there is room again (the limit
raised by a config reload, or a filler stream deleted) without restarting nats-server,
appends work, readiness is back and the interrupted turn ends."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest
from nats.js.api import StreamConfig

from tests.hardening.stack import Stack, running_stack
from threadline.events.conversation import AssistantTurn
from threadline.events.fold import fold
from threadline.events.schema import TERMINAL_KINDS
from threadline.services.runtime.natsserver import EmbeddedNats

FILLER = "FILLER"
LONG_ANSWER = "[[words:3000]] [[pace:tps=300]]"  # ~10 s of deltas


def _config(max_file_store: str) -> str:
    return f"jetstream {{ max_file_store: {max_file_store} }}\n"


@pytest.fixture
async def small_nats(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A nats-server of its own whose file store holds 4 MB."""
    server = EmbeddedNats(tmp_path / "nats", config_text=_config("4MB"))
    await server.start()
    yield server
    await server.stop()


async def _fill(stack: Stack) -> None:
    """Publish to a stream of our own until JetStream refuses for want of room."""
    js = stack.store.nc.jetstream()
    await js.add_stream(StreamConfig(name=FILLER, subjects=["filler"]))
    for _ in range(1000):
        try:
            await js.publish("filler", b"x" * 64_000)
        except nats.errors.Error as exc:
            assert "insufficient resources" in str(exc), exc
            return
    raise AssertionError("the store never filled")


async def _first_delta(stack: Stack, session: str, turn: str) -> None:
    async with asyncio.timeout(30):
        async for rec in stack.store.follow(session):
            if rec.turn == turn and rec.kind == "text_delta":
                return


async def test_a_full_store_is_reported_and_the_turn_ends_once_there_is_room(
    small_nats: EmbeddedNats, tmp_path: Path
) -> None:
    async with running_stack(small_nats.url, tmp_path / "data") as stack:
        alice = stack.client("alice")
        session = await stack.new_session()
        turn = await stack.say(session, LONG_ANSWER)
        await _first_delta(stack, session, turn)

        await _fill(stack)
        refused = await alice.post(f"/v1/sessions/{session}/messages", json={"text": "more"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        ready = await alice.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert "insufficient resources" in ready.json()["checks"]["appends"]

        # room again without a restart: a larger limit, applied by a config reload
        (small_nats.store_dir / "nats-server.conf").write_text(_config("100MB"))
        assert small_nats.process is not None
        small_nats.process.send_signal(signal.SIGHUP)

        events = await stack.until_terminal(session, turn, wait_s=60)
        assert events[-1].kind == "turn_completed", [e.kind for e in events]
        # Whether a refused delta interrupted the attempt (it is then redone) or the
        # coalescer still held the text when room came back depends on timing (its window
        # stretches with load); either way the answer is whole: nothing lost or doubled.
        answer = fold(await stack.store.load(session)).committed[-1]
        assert isinstance(answer, AssistantTurn)
        assert len(answer.text.split()) == 3000, len(answer.text.split())
        ready = await alice.get("/readyz")
        assert ready.status_code == 200, ready.text
        again = await stack.say(session, "and now?")
        assert (await stack.until_terminal(session, again))[-1].kind in TERMINAL_KINDS


async def test_readiness_returns_when_there_is_room_though_nothing_appends(
    small_nats: EmbeddedNats, tmp_path: Path
) -> None:
    """Nothing is pending and nobody posts: readiness tries a write of its own."""
    async with running_stack(small_nats.url, tmp_path / "data") as stack:
        alice = stack.client("alice")
        session = await stack.new_session()
        await _fill(stack)
        refused = await alice.post(f"/v1/sessions/{session}/messages", json={"text": "hi"})
        assert refused.status_code == 503, refused.text
        assert (await alice.get("/readyz")).status_code == 503
        assert (await alice.get("/readyz")).status_code == 503  # the probe write fails too

        await stack.store.nc.jetstream().delete_stream(FILLER)  # room again
        ready = await alice.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert "appends" not in ready.json()["checks"]
