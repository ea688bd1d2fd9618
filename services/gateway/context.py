"""Everything a request handler needs, built once per app: the :class:`Gateway`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any, Final

from litestar import Request
from litestar.di import NamedDependency

from threadline.base.aio import stop_task
from threadline.base.config import Settings
from threadline.events.fold import SessionState
from threadline.events.kv import directory_for, snapshot_store_for
from threadline.events.sessions import SessionCache
from threadline.events.store import EventStore, Recorded
from threadline.services.commands import Catalog, SessionCommands
from threadline.services.commands.keys import DerivedIds
from threadline.services.gateway.access import Owners
from threadline.services.gateway.auth import Authenticator, Principal
from threadline.services.gateway.errors import Problem, unauthorized
from threadline.services.gateway.history import HistoryReader
from threadline.services.gateway.hub import Hub, Subscriber
from threadline.services.gateway.metrics import Metrics
from threadline.services.gateway.options import GatewayOptions
from threadline.services.gateway.ratelimit import RateLimiter
from threadline.services.gateway.sse import ConnectionLimiter, SSEResponse
from threadline.services.gateway.store_history import StoreHistory

#: records followed for one session and not yet folded; beyond that its next get reads
#: the log instead
_FOLLOWED_MAX: Final = 1024


class FollowedSessions(SessionCache):
    """The session cache, told by the hub of the records it follows for the sessions
    held here: they are kept aside and folded at the session's next :meth:`get`, which
    then reads only the session's head, not the events streamed since; they are dropped
    when the session's last stream here ends. (Folding every streamed event at once
    cost more than the reads it saves where a session is not asked for again.)"""

    def __init__(self, store: EventStore, **options: Any) -> None:
        super().__init__(store, **options)
        self._followed: dict[str, list[Recorded]] = {}

    def followed(self, rec: Recorded) -> None:
        session = rec.session
        if session not in self:
            return
        records = self._followed.get(session)
        if records is None:
            self._followed[session] = [rec]
        elif len(records) < _FOLLOWED_MAX:
            records.append(rec)
        else:  # a long way behind: the next get reads the log
            del self._followed[session]

    def forget_followed(self, session: str) -> None:
        self._followed.pop(session, None)

    async def get(self, session: str, *, seen: int = 0) -> SessionState:
        records = self._followed.pop(session, None)
        if records and session in self:
            for rec in records:
                self.appended(rec)  # folds those next in line, ignores the rest
        return await super().get(session, seen=seen)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        *,
        options: GatewayOptions,
        catalog: Catalog,
        history: HistoryReader | None,
        dev_signin: str | None = None,
    ) -> None:
        self.settings = settings
        #: the dev token the web page may fetch (``threadline up`` only; web/signin.py)
        self.dev_signin = dev_signin
        self.store = store
        self.options = options
        self.catalog = catalog
        #: session states (commands, ``GET /v1/sessions/{id}``), folded only where new
        self.sessions = FollowedSessions(store, snapshots=snapshot_store_for(store))
        #: every write to a session goes through these
        self.commands = SessionCommands(
            store, catalog, sessions=self.sessions, ids=DerivedIds(settings.id_key())
        )
        self.auth = Authenticator(settings.tokens, options.jwt)
        self.metrics = Metrics()
        # the clock wakes streams for heartbeats and deadlines; lifetimes are kept to
        # within one tick
        tick_s = max(0.01, min(options.heartbeat_s, options.max_stream_s) / 2)
        self.hub = Hub(
            store,
            buffer=options.sse_buffer,
            tick_s=tick_s,
            on_cut=self.metrics.slow_clients_cut.inc,
            on_record=self.sessions.followed,
        )
        self.owners = Owners(store)
        self.limiter = ConnectionLimiter(options.max_sse_per_owner)
        #: the per-owner rate limit on commands (every POST)
        self.rate = RateLimiter(options.rate.per_s, options.rate.burst)
        #: the default reader is ours to start and stop; a plugged-in one is not
        self._own_history: StoreHistory | None = None
        if history is None:
            history = self._own_history = StoreHistory(
                store, on_started=self.owners.remember, directory=directory_for(store)
            )
        self.history = history
        self._turns: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.hub.start()
        await self.sessions.open()
        if self._own_history is not None:
            await self._own_history.start()
        self._turns = asyncio.create_task(self.metrics.follow_turns(self.store))

    def end_streams(self) -> None:
        """Start shutting down: end SSE streams so the server can stop promptly."""
        self.hub.end_all()

    async def close(self) -> None:
        await self.hub.close()
        if self._turns is not None:
            await stop_task(self._turns)
        if self._own_history is not None:
            await self._own_history.close()
        await self.sessions.close()

    async def caught_up(self, position: int) -> None:
        """Read-your-writes: wait until views reflect ``position`` (409 after the timeout)."""
        if position <= 0:
            return
        if not await self.history.wait(position, timeout_s=self.options.wait_timeout_s):
            raise Problem(
                409,
                "not_caught_up",
                f"views have not reached position {position} yet; retry",
                field="wait_for",
                headers={"Retry-After": "1"},
            )


class Slot:
    """A stream's place: one of the owner's connections (429 when none is free) and the
    session's hub subscription. The response made by :meth:`respond` gives both back
    when it ends, however it ends; before that, :meth:`release` does (idempotent)."""

    def __init__(self, gw: Gateway, principal: Principal, session: str) -> None:
        self.gw = gw
        self.principal = principal
        self.session = session
        self.sub: Subscriber | None = None
        self.acquired = False

    @contextlib.contextmanager
    def held(self) -> Iterator[Slot]:
        """Take the owner's connection (429 if none is free); give everything back if
        the block fails (a response made in it gives it back when it ends)."""
        if not self.gw.limiter.acquire(self.principal.owner):
            raise Problem(
                429,
                "too_many_streams",
                f"at most {self.gw.limiter.per_owner} concurrent streams per owner",
                headers={"Retry-After": "5"},
            )
        self.acquired = True
        try:
            yield self
        except BaseException:
            self.release()
            raise

    async def join(self, after: int | None = None) -> tuple[Subscriber, int]:
        """Subscribe to the session's live events: the buffer and ``live_from``
        (:meth:`Hub.join`: ``after`` when nothing of the session came since)."""
        self.sub, live_from = await self.gw.hub.join(self.session, after)
        return self.sub, live_from

    def release(self) -> None:
        if self.sub is not None:
            self.gw.hub.leave(self.session, self.sub)
            self.sub = None
            if not self.gw.hub.has_upstream(self.session):
                self.gw.sessions.forget_followed(self.session)
        if self.acquired:
            self.gw.limiter.release(self.principal.owner)
            self.acquired = False

    @property
    def lifetime_s(self) -> float:
        """How long the stream may last: the gateway's limit, never past the token's expiry."""
        lifetime = self.gw.options.max_stream_s
        if self.principal.expires_at is not None:
            lifetime = min(lifetime, self.principal.expires_at - time.time())
        return lifetime

    def respond(
        self, chunks: AsyncGenerator[bytes, None], headers: dict[str, str] | None = None
    ) -> SSEResponse:
        clients = self.gw.metrics.sse_clients
        clients.inc()

        def closed() -> None:
            clients.dec()
            self.release()

        return SSEResponse(chunks, closed, headers=headers)


#: how handlers receive the gateway: ``gw: GW``
GW = NamedDependency[Gateway]
#: how handlers receive the caller (authenticated by the middleware): ``principal: Caller``
Caller = NamedDependency[Principal]


def principal_of(request: Request[Any, Any, Any], gw: GW) -> Principal:
    """The caller. It takes ``gw`` only so that Litestar resolves the two dependencies
    one after the other: independent ones it resolves concurrently, in an anyio task
    group per request, which cost the gateway about a tenth of its CPU."""
    del gw
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise unauthorized()
    return user
