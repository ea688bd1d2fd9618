"""asyncio helpers for every layer."""

from __future__ import annotations

import asyncio


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
