"""A store call cancelled just as its nats-py reply arrives is cancelled.

Python 3.11's ``asyncio.wait_for``, inside every nats-py request, returns the reply and
drops a cancellation that arrives with it; the store raises it anyway
(:func:`threadline.base.aio.cancelled_meanwhile`). Found by CI: a stop request that a
turn's writer stepped over cancelled the turn's work in the middle of a head read, the
read dropped the cancellation, and the answer streamed to its end instead of stopping
(tests/web/test_debugger). The call is cancelled at each step of its request in turn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from tests.events.contract import started
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.store import Recorded


async def _first_followed(store: JetStreamEventStore) -> Recorded:
    async with contextlib.aclosing(store.follow("s1")) as followed:
        return await anext(followed)


CALLS: dict[str, Callable[[JetStreamEventStore], Awaitable[object]]] = {
    "head": lambda store: store.head("s1"),  # a get the stream leader answers
    "last_position": lambda store: store.last_position(),  # stream info
    "follow": _first_followed,  # a consumer made, then its first record
}


@pytest.mark.parametrize("call", CALLS)
async def test_a_call_cancelled_as_its_reply_arrives_is_cancelled(
    js_store: JetStreamEventStore, call: str
) -> None:
    await js_store.append("s1", started())
    dropped = cancelled = 0
    for tries in range(600):
        task = asyncio.ensure_future(CALLS[call](js_store))
        for _ in range(tries % 60):
            await asyncio.sleep(0)  # steps of the loop, not a wait for something
        if not task.cancel():  # it had finished
            await task
            continue
        try:
            await task
        except asyncio.CancelledError:
            cancelled += 1
        else:
            dropped += 1
    assert cancelled > 0
    assert dropped == 0
