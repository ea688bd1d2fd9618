"""The session cache handed to the command layer is the one it uses, even while it is
empty (an empty cache is falsy: ``sessions or SessionCache(store)`` swapped it for a
cache of its own, without the gateway's snapshots, so every session was folded twice)."""

from __future__ import annotations

from threadline.events.memory import MemoryEventStore
from threadline.events.sessions import SessionCache
from threadline.events.snapshots import MemorySnapshots
from threadline.services.commands import SessionCommands


def test_commands_use_the_cache_they_are_given() -> None:
    store = MemoryEventStore()
    cache = SessionCache(store, snapshots=MemorySnapshots())
    assert len(cache) == 0
    commands = SessionCommands(store, sessions=cache)
    assert commands.sessions is cache
