"""Per-owner rate limit on commands: a token bucket per owner, checked before anything runs.

Commands are the requests that append to the log and so make work for the agent (and
its provider): every ``POST`` under ``/v1`` (create a session, send a message, cancel,
fork) and ``POST /api/chat``. :class:`CommandRateLimit` runs right after
authentication, so it knows the owner; over the limit the request is answered 429
``rate_limited`` with ``Retry-After`` before its body is read or anything is appended,
so no model is ever called for it. Reads and streams are not counted here (streams have
their own per-owner cap).

Each owner has a bucket of ``burst`` tokens that refills at ``per_s`` tokens a second;
a command takes one. ``per_s = 0`` (or ``burst = 0``) turns the limit off. Retries
count like any other request. Buckets live in memory per gateway process: with N
gateways behind a balancer an owner gets up to N times the rate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from threadline.services.gateway.auth import Principal
from threadline.services.gateway.errors import Problem

#: owners tracked at once; beyond this the least recently seen bucket is forgotten
_MAX_OWNERS: Final = 100_000


class RateLimiter:
    """Token buckets keyed by owner. Not thread-safe: one event loop uses it."""

    def __init__(
        self,
        per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_s = per_s
        self.burst = burst
        self._clock = clock
        #: owner -> (tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_s > 0 and self.burst > 0

    def take(self, owner: str) -> float:
        """Take a token for ``owner``: 0.0 if granted, else seconds until one is available."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        tokens, then = self._buckets.pop(owner, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_s)
        wait = max(0.0, 1.0 - tokens) / self.per_s
        if not wait:
            tokens -= 1.0
        self._buckets[owner] = (tokens, now)  # most recently seen last
        if len(self._buckets) > _MAX_OWNERS:
            self._buckets.popitem(last=False)
        return wait


class CommandRateLimit:
    """ASGI middleware (after authentication): 429 for an owner's ``POST`` over the limit."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope.get("method") == "POST":
            user: Any = scope.get("user")
            if isinstance(user, Principal):
                wait = math.ceil(self.limiter.take(user.owner))
                if wait > 0:
                    raise Problem(
                        429,
                        "rate_limited",
                        f"too many commands from this owner; retry in {wait} s",
                        headers={"Retry-After": str(wait)},
                    )
        await self.app(scope, receive, send)
