"""Issue 12 item 9: after the stream is recreated (a restore deletes it and creates it
again), a running agent re-creates its work-queue consumer and carries on, without a
restart; while the consumer is missing, ``/readyz`` says so (503, ``work_queue``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.stack import running_stack
from tests.support.logged import Logged, watching
from threadline.events.stream import ensure_stream
from threadline.services.runtime.natsserver import EmbeddedNats

AGENT_MISSING = "'threadline-agent' is missing"
#: the agents' work queue and the approval deadlines' queue both come back
RECREATED = ("'threadline-agent' re-created", "'threadline-approval-deadlines' re-created")


@pytest.fixture
def queue_log() -> Iterator[Logged]:
    with watching("threadline.events.jetstream_queue", AGENT_MISSING, *RECREATED) as logged:
        yield logged


async def test_agent_consumes_again_after_the_stream_is_recreated(
    nats_server: EmbeddedNats, tmp_path: Path, queue_log: Logged
) -> None:
    async with running_stack(nats_server.url, tmp_path) as stack:
        before = await stack.new_session()
        turn = await stack.say(before, "before the restore")
        assert (await stack.until_terminal(before, turn))[-1].kind == "turn_completed"
        ready = stack.client("alice")

        js = stack.store.nc.jetstream()
        await js.delete_stream(stack.store.settings.name)
        await queue_log.wait(AGENT_MISSING)
        response = await ready.get("/readyz")
        assert response.status_code == 503
        assert "threadline-agent" in response.json()["checks"]["work_queue"]

        await ensure_stream(stack.store.nc, stack.store.settings)  # the restore
        for phrase in RECREATED:  # every queue of the store: readiness waits for all
            await queue_log.wait(phrase)
        response = await ready.get("/readyz")
        assert response.status_code == 200, response.text
        assert "work_queue" not in response.json()["checks"]

        after = await stack.new_session()
        turn = await stack.say(after, "after the restore")
        assert (await stack.until_terminal(after, turn))[-1].kind == "turn_completed"


async def test_a_turn_can_be_stopped_after_the_stream_is_recreated(
    nats_server: EmbeddedNats, tmp_path: Path, queue_log: Logged
) -> None:
    """The agent's other reader of the log (stop requests) carries on too."""
    async with running_stack(nats_server.url, tmp_path) as stack:
        await stack.store.nc.jetstream().delete_stream(stack.store.settings.name)
        await queue_log.wait(AGENT_MISSING)
        await ensure_stream(stack.store.nc, stack.store.settings)
        for phrase in RECREATED:  # every queue of the store: readiness waits for all
            await queue_log.wait(phrase)

        session = await stack.new_session()
        turn = await stack.say(session, "[[words:3000]] [[pace:tps=100]]")
        async with asyncio.timeout(30):
            async for rec in stack.store.follow(session):
                if rec.turn == turn and rec.kind == "text_delta":
                    break
        stop = await stack.client("alice").post(
            f"/v1/sessions/{session}/cancel", json={"turn_id": turn}
        )
        assert stop.status_code == 202, stop.text
        assert (await stack.until_terminal(session, turn, wait_s=20))[-1].kind == "turn_cancelled"
