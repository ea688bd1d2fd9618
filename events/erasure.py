"""Erasure records: the log's note that content keys were destroyed.

``threadline erase`` (and the gateway's admin route) destroy keys in the key store
(:mod:`threadline.events.sealing`), then append an :class:`Erasure` on the subject
``<prefix>._log.erasure``: the ids of the keys destroyed, when, and why (``subject``: a
data subject's request; ``retention``: every month before ``before``). It names no
owner and no session. Every process that holds keys follows these records
(:func:`follow_erasures`) and drops the keys from its cache, and what it derived from
the content (session states, the projections' titles) with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final, Literal, NamedTuple

import msgspec

from threadline.base.aio import cancelled_meanwhile
from threadline.base.errors import InvalidInput, StoreUnavailable
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.sealing import Keyring
from threadline.events.store import ERASURE_KIND, EventStore, erasure_subject
from threadline.events.stream import unavailable

log = logging.getLogger(__name__)

_RETRY_S: Final = 1.0


class Erasure(msgspec.Struct, frozen=True, kw_only=True, tag=ERASURE_KIND, tag_field="kind"):
    """Content keys destroyed: their ids, when (microseconds since the epoch, UTC), why
    (``subject``: erasure of a data subject; ``retention``: months before ``before``)."""

    keys: tuple[str, ...]
    at: int
    reason: Literal["subject", "retention"]
    before: str = ""


_decoder: Final = msgspec.json.Decoder(Erasure)


def check_period(period: str) -> str:
    """``YYYY-MM``, or :class:`InvalidInput`."""
    try:
        time.strptime(period, "%Y-%m")
    except ValueError:
        raise InvalidInput(f"{period!r} is not a month (YYYY-MM)") from None
    return period


class Erased(NamedTuple):
    """An erasure done: its record, and the record's position in the log (0: none)."""

    record: Erasure
    position: int


async def erase(
    store: EventStore,
    keyring: Keyring,
    *,
    owner: str | None = None,
    before: str | None = None,
) -> Erased:
    """Destroy the keys of ``owner`` (and/or of every month before ``before``), forget
    them here, and append the erasure record (to a JetStream log; an in-memory one has
    no log records). The record is appended even when no key was left to destroy."""
    if not owner and not before:
        raise InvalidInput("name an owner, a month (--before YYYY-MM), or both")
    if before:
        check_period(before)
    gone = await keyring.erase(owner=owner or None, before=before or None)
    record = Erasure(
        keys=tuple(gone),
        at=time.time_ns() // 1000,
        reason="subject" if owner else "retention",
        before=before or "",
    )
    if not isinstance(store, JetStreamEventStore):
        return Erased(record, 0)
    data = msgspec.json.encode(record)
    with unavailable("appending an erasure record"):
        ack = await store.nc.jetstream().publish(
            erasure_subject(store.prefix), data, stream=store.settings.name
        )
    return Erased(record, ack.seq)


async def follow_erasures(store: JetStreamEventStore, keyring: Keyring) -> None:
    """Forever: every erasure record in the log, from the first, forgets its keys in
    ``keyring`` (a store that fails is followed again from where it was)."""
    after = 0
    while True:
        try:
            reading = store.follow_raw([erasure_subject(store.prefix)], after=after)
            async with contextlib.aclosing(reading) as records:
                async for stored in records:
                    after = stored.position
                    try:
                        record = _decoder.decode(stored.data)
                    except msgspec.DecodeError:
                        log.warning("unreadable erasure record at position %d", after)
                        continue
                    keyring.forget(list(record.keys))
        except StoreUnavailable as exc:
            cancelled_meanwhile()  # closing the read made this
            log.warning("following erasure records: %s; again in %.0f s", exc, _RETRY_S)
            await asyncio.sleep(_RETRY_S)  # a retry timer, not a synchronisation


def decode_erasure(data: bytes) -> Erasure:
    return _decoder.decode(data)
