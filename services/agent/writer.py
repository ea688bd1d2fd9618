"""Appends for one attempt at a turn, fenced by optimistic concurrency.

Every append names the session version this attempt last saw. When someone else
appended meanwhile, the writer looks at what they wrote: user messages and stop
commands (from the gateway) are fine and the writer carries on after them, noting a
stop for its turn; anything written for this turn by another writer (a worker that
took the turn over, or one that started the same attempt number from the same state, or
gave up on it) fences this attempt off with :class:`Fenced`. A writer's idempotency keys
are its own, so its append can never be taken for another writer's event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from threadline.base.errors import ConcurrencyError, ThreadlineError
from threadline.events.ids import new_id
from threadline.events.schema import CancelRequested, Event
from threadline.events.store import EventStore, NewEvent, Recorded

#: what an event's envelope and its fields besides text take, at most
ENVELOPE_BYTES: Final = 2048


class Fenced(ThreadlineError):
    """Another attempt owns this turn now; this one must stop without writing."""


@dataclass(eq=False)
class TurnWriter:
    store: EventStore
    session: str
    turn_id: str
    attempt: int
    version: int
    actor: str
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    #: told of every event once it is in the log
    on_append: Callable[[Event], None] | None = None
    #: told of every record this writer appended (the worker's session cache folds them)
    on_record: Callable[[Recorded], None] | None = None

    def __post_init__(self) -> None:
        self.last_position = self._count = 0
        #: the most characters of text one of this writer's events may carry: a character
        #: takes at most 6 bytes encoded (a JSON ``\uXXXX`` escape; UTF-8 takes 4), 8 once
        #: sealed (the encoded event, in base64: docs/audit.md#erasure)
        sealing = self.store.keyring is not None and self.store.keyring.enabled
        self.text_chars = max(
            1, (self.store.max_event_bytes - ENVELOPE_BYTES) // (8 if sealing else 6)
        )
        self._lock = asyncio.Lock()
        # unique to this writer: "<turn>/<attempt>/<count>" alone is shared by two workers
        # that fold the same state (a stall past the ack deadline, then a redelivery) and
        # by a give-up, and the store would return the other writer's event as ours
        self._key_prefix = f"{self.turn_id}/{self.attempt}/{new_id()}/"

    async def append(self, event: Event) -> Recorded:
        async with self._lock:  # appends of one attempt are strictly ordered
            self._count += 1
            new = NewEvent(
                event=event,
                actor=self.actor,
                turn=self.turn_id,
                attempt=self.attempt,
                key=f"{self._key_prefix}{self._count}",
            )
            while True:
                try:
                    [rec] = await self.store.append(
                        self.session, new, expected_version=self.version
                    )
                except ConcurrencyError:
                    await self._absorb_foreign()
                    continue
                self.version = rec.version
                self.last_position = rec.position
                if self.on_append is not None:
                    self.on_append(event)
                if self.on_record is not None:
                    self.on_record(rec)
                return rec

    async def _absorb_foreign(self) -> None:
        """Step over events others appended since ``version``, or raise :class:`Fenced`."""
        since = self.store.read(
            self.session, from_version=self.version + 1, after=self.last_position
        )
        async for rec in since:
            env = rec.envelope
            mine = env.key.startswith(self._key_prefix)
            if env.turn == self.turn_id and env.attempt is not None and not mine:
                raise Fenced(
                    f"turn {self.turn_id} was taken over by attempt {env.attempt} ({env.actor})"
                )
            if isinstance(env.event, CancelRequested) and env.turn in (None, self.turn_id):
                self.cancelled.set()
            self.version = env.version
