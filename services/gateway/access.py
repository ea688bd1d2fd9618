"""Who owns a session, and whether a caller may see or change it.

A session's owner is in its first event and never changes, so it is cached for good
(bounded LRU). A session that does not exist, a malformed id and another owner's
session all answer the same 404: callers learn nothing about sessions that are not
theirs. An admin may read any session but write only their own (403 otherwise).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Final

from threadline.base.errors import InvalidSessionId
from threadline.events.ids import validate_session_id
from threadline.events.schema import SessionStarted
from threadline.events.store import EventStore
from threadline.services.gateway.auth import Principal
from threadline.services.gateway.errors import Problem, session_not_found

_CACHE_SIZE: Final = 100_000


class Owners:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._cache: OrderedDict[str, str] = OrderedDict()

    def remember(self, session: str, owner: str) -> None:
        self._cache[session] = owner
        self._cache.move_to_end(session)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    async def owner_of(self, session: str) -> str | None:
        """The owner of ``session``; None when it does not exist (or is not a session)."""
        owner = self._cache.get(session)
        if owner is not None:
            return owner
        if (await self.store.head(session)).version == 0:
            return None
        async with contextlib.aclosing(self.store.read(session, to_version=1)) as first:
            async for rec in first:
                if isinstance(rec.event, SessionStarted):
                    self.remember(session, rec.event.owner)
                    return rec.event.owner
                break
        return None

    async def readable(self, principal: Principal, session_id: str) -> str:
        """The validated session id if the caller may read it, else a 404 :class:`Problem`."""
        owner = await self._owner(session_id)
        if owner is None or not principal.can_read(owner):
            raise session_not_found()
        return session_id

    async def writable(self, principal: Principal, session_id: str) -> str:
        """The validated session id if the caller owns it (404, or 403 for an admin)."""
        if not await self.owns(principal, await self.readable(principal, session_id)):
            raise Problem(403, "forbidden", "admins may read, not write, other owners' sessions")
        return session_id

    async def owns(self, principal: Principal, session_id: str) -> bool:
        """Whether ``session_id`` is a session of the caller's own."""
        return await self._owner(session_id) == principal.owner

    async def _owner(self, session_id: str) -> str | None:
        try:
            validate_session_id(session_id)
        except InvalidSessionId:
            return None
        return await self.owner_of(session_id)
