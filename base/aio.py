"""asyncio helpers for every layer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def cancelled_meanwhile() -> None:
    """Raise the cancellation of the running task if an await below dropped it.

    Python 3.11's ``asyncio.wait_for``, which every nats-py request uses (stream info,
    message gets, consumer creation, publishing, in-progress acks), returns the reply
    instead of raising when the task is cancelled just as the reply arrives: the
    cancellation is caught and dropped, and a loop around such a request goes on for
    ever. The task still counts the cancellation (``Task.cancelling``), so a loop calls
    this after each such await."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def in_thread(
    fn: Callable[..., T], *args: object, interrupt: threading.Event | None = None, **kw: object
) -> T:
    """Run a synchronous call in a worker thread; if cancelled, set ``interrupt`` (if any)
    and let the call finish first (a transaction is never abandoned half-way, and nothing
    is closed under it)."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kw))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if interrupt is not None:
            interrupt.set()
        await asyncio.wait([future])
        raise


async def stop_task(task: asyncio.Task[object]) -> None:
    """Cancel ``task`` and wait until it has finished. The cancellation is repeated if
    the task carries on: on Python 3.11 ``asyncio.wait_for`` (used by nats-py's
    ``next_msg``) can swallow a cancellation that arrives together with a message."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.25)
