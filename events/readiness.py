"""What stops a store's users from working, by check: the readiness problems.

The adapters report here what they learn while working (the work queue's consumer is
missing, appends are refused) and clear it once it works again; ``/readyz`` answers
503 while any is reported. Kept beside the store, not in it, so any store has them.
"""

from __future__ import annotations

import time
import weakref
from typing import Final

from threadline.base.errors import StoreUnavailable
from threadline.events.store import EventStore

#: appends are refused or unanswered (the last one failed); cleared by the next success
APPENDS: Final = "appends"
#: how long a failed append alone keeps a process unready when it cannot try a write of
#: its own (a gateway's NATS user may write user intents only): long enough to take it
#: out of rotation, short enough that it gets traffic, and so a real append, again
APPENDS_HOLD_S: Final = 15.0
#: the stream's configuration differs from what Threadline created (checked on each probe)
STREAM_CONFIG: Final = "stream_config"

_PROBLEMS: weakref.WeakKeyDictionary[EventStore, dict[str, str]] = weakref.WeakKeyDictionary()
_APPENDS_FAILED_AT: weakref.WeakKeyDictionary[EventStore, float] = weakref.WeakKeyDictionary()


def problems(store: EventStore) -> dict[str, str]:
    """The problems reported for ``store``, by check (empty: ready); callers may change it."""
    return _PROBLEMS.setdefault(store, {})


def appended(store: EventStore, failure: str | None) -> None:
    """Record the outcome of an append: ``failure`` says why it failed, None that it worked."""
    if failure is None:
        problems(store).pop(APPENDS, None)
        _APPENDS_FAILED_AT.pop(store, None)
    else:
        problems(store)[APPENDS] = failure
        _APPENDS_FAILED_AT[store] = time.monotonic()


def appends_failed_lately(store: EventStore) -> bool:
    """Whether an append failed within :data:`APPENDS_HOLD_S` and none worked since."""
    failed_at = _APPENDS_FAILED_AT.get(store)
    return failed_at is not None and time.monotonic() - failed_at < APPENDS_HOLD_S


async def config_checked(store: EventStore) -> dict[str, str]:
    """:func:`problems`, with the store's configuration checked now (:data:`STREAM_CONFIG`)."""
    checks = dict(problems(store))
    try:
        found = await store.config_problems()
    except StoreUnavailable as exc:
        found = [str(exc)]
    if found:
        checks[STREAM_CONFIG] = "; ".join(found)
    return checks
