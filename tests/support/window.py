"""Waiting for a JetStream stream's duplicate window to go by, by watching the server.

nats-server forgets message ids on its own timer. Rather than sleeping for the window
plus a guess at the timer's slack, append a probe with a fixed key to a probe session:
while the server remembers the key it answers "duplicate" (the same position); once it
stores the probe again, every key stored before the first probe is forgotten too.
"""

from __future__ import annotations

import asyncio

from threadline.events.schema import SessionStarted
from threadline.events.store import EventStore, NewEvent

PROBE_SESSION = "window-probe"


async def window_passed(store: EventStore, probe_session: str = PROBE_SESSION) -> None:
    """Return once the server has forgotten every message id stored so far."""
    probe = NewEvent(event=SessionStarted(owner="probe"), key="probe")
    first = (await store.append(probe_session, probe))[0].position
    while True:
        if (await store.append(probe_session, probe))[0].position != first:
            return
        await asyncio.sleep(0.05)  # polling the server's answer, at a modest pace
