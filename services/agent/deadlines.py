"""Approval deadlines, kept without a worker: every ``approval_requested`` is also a
message of a queue of its own, taken back with a delay until its deadline (the server
holds it meanwhile: no task, no timer in any process), then answered by
:func:`threadline.events.approvals.decide` with the deadline's denial unless a person
decided first. Shared by every agent, so it survives any of them (docs/human-in-the-loop.md).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Final

from threadline.base.errors import StoreError, ThreadlineError
from threadline.events.approvals import SYSTEM, decide, expiry
from threadline.events.schema import ApprovalRequested
from threadline.events.sessions import SessionCache
from threadline.events.store import EventStore
from threadline.events.workqueue import Delivery, WorkQueue

log = logging.getLogger(__name__)

#: the queue's name (on JetStream: its durable consumer) and the kind it takes
QUEUE_NAME: Final = "threadline-approval-deadlines"
KINDS: Final = ("approval_requested",)


async def keep_deadlines(queue: WorkQueue, store: EventStore, sessions: SessionCache) -> None:
    """Consume ``queue`` (of ``approval_requested`` records) until cancelled."""

    async def room() -> int:
        return 64

    async with contextlib.aclosing(queue.deliveries(room)) as deliveries:
        async for delivery in deliveries:
            try:
                await _due(delivery, store, sessions)
            except ThreadlineError as exc:  # the store, mostly: try again a little later
                log.warning("approval deadline of position %d: %s", delivery.record.position, exc)
                with contextlib.suppress(StoreError):
                    await delivery.nak(1.0)


async def _due(delivery: Delivery, store: EventStore, sessions: SessionCache) -> None:
    """Deny the call if its deadline passed undecided; else wait until it does."""
    rec, asked = delivery.record, delivery.record.event
    assert isinstance(asked, ApprovalRequested)
    state = await sessions.get(rec.session)
    turn = state.turns.get(rec.turn or "")
    approval = turn.approvals.get(asked.call_id) if turn is not None else None
    open_ = approval is not None and approval.request == asked and approval.decision is None
    if turn is None or turn.ending is not None or not open_ or not asked.deadline:
        await delivery.ack()  # decided, ended, superseded, or no deadline
        return
    left_s = (asked.deadline - time.time_ns() // 1000) / 1e6
    if left_s > 0:
        await delivery.nak(left_s)
        return
    await decide(store, sessions, rec.session, expiry(asked.call_id), SYSTEM)
    await delivery.ack()
