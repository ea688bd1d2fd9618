"""The JetStream work queue when its stream is missing as it starts (found by CI: a
restore deleted the stream between an agent's start-up and its first consumer, and the
agent failed with ``stream not valid`` instead of waiting for the stream)."""

from __future__ import annotations

import asyncio
import contextlib

from tests.events.contract import started
from tests.support.logged import watching
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.jetstream_queue import READINESS_CHECK, JetStreamWorkQueue
from threadline.events.readiness import problems
from threadline.events.schema import UserMessage
from threadline.events.store import NewEvent
from threadline.events.stream import ensure_stream


async def _room() -> int:
    return 1


async def test_a_queue_started_while_its_stream_is_missing_waits_for_it(
    js_store: JetStreamEventStore,
) -> None:
    await js_store.nc.jetstream().delete_stream(js_store.settings.name)
    queue = JetStreamWorkQueue(js_store, name="q", ack_wait_s=5)
    with watching("threadline.events.jetstream_queue", "'q' is missing", "'q' re-created") as log:
        async with contextlib.aclosing(queue.deliveries(_room)) as deliveries:
            first = asyncio.ensure_future(anext(deliveries))
            await log.wait("'q' is missing")
            assert "'q'" in problems(js_store)[READINESS_CHECK]  # /readyz says 503

            await ensure_stream(js_store.nc, js_store.settings)  # the restore ends
            await log.wait("'q' re-created")
            assert READINESS_CHECK not in problems(js_store)
            await js_store.append(
                "s1", [started(), NewEvent(event=UserMessage(text="hi"), turn="t1")]
            )
            delivery = await asyncio.wait_for(first, 30)
            assert delivery.record.event == UserMessage(text="hi")
            await delivery.ack()
