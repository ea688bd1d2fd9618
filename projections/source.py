"""The projector's input: every stored event undecoded, with its subject (:class:`Stored`).

JetStream gives the stored bytes directly (``follow_raw``), so a corrupt or unknown
event reaches the projector and becomes an error row instead of stopping the read.
Other stores (the in-memory one) can only hold valid events; their records' bytes are
used as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from threadline.events.jetstream import JetStreamEventStore
from threadline.events.store import EventStore, Stored, subject_for


async def raw_events(
    store: EventStore, *, after: int = 0, until_end: bool = False
) -> AsyncIterator[Stored]:
    """Every event after position ``after``, live (or, with ``until_end``, up to the end)."""
    if isinstance(store, JetStreamEventStore):
        async for item in store.follow_raw([f"{store.prefix}.>"], after=after, until_end=until_end):
            yield item
        return
    end = await store.last_position() if until_end else None
    if end is not None and end <= after:
        return
    async for rec in store.follow_all(after=after):
        yield Stored(rec.position, subject_for(store.prefix, rec.session, rec.kind), rec.raw)
        if end is not None and rec.position >= end:
            return
