"""What stops a store's users from working, by check: the readiness problems.

The adapters report here what they learn while working (the work queue's consumer is
missing, appends are refused) and clear it once it works again; ``/readyz`` answers
503 while any is reported. Kept beside the store, not in it, so any store has them.
"""

from __future__ import annotations

import weakref

from threadline.events.store import EventStore

_PROBLEMS: weakref.WeakKeyDictionary[EventStore, dict[str, str]] = weakref.WeakKeyDictionary()


def problems(store: EventStore) -> dict[str, str]:
    """The problems reported for ``store``, by check (empty: ready); callers may change it."""
    return _PROBLEMS.setdefault(store, {})
