"""Running the projections' synchronous database work from asyncio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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
