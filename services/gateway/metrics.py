"""The gateway's Prometheus metrics, on the project's registry (:mod:`threadline.base.metrics`).

Labels never carry owners, session ids or tokens: only methods, route templates,
statuses and outcomes. Turn latencies come from the terminal events this gateway sees
on the log (one ``follow_all`` of the three terminal kinds). Each gateway has its own
registry; ``/metrics`` shows it, then the process's shared one: under ``threadline up``
the agent's and the projector's metrics, projection lag included.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Final

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from threadline.base.errors import ThreadlineError
from threadline.base.metrics import Registry, default_registry
from threadline.events.schema import TERMINAL_KINDS, TurnCompleted
from threadline.events.store import EventStore
from threadline.events.turns import ended_status

log = logging.getLogger(__name__)

_P: Final = "threadline_gateway"
_PARAM_RE: Final = re.compile(r"\{(\w+):\w+\}")


class Metrics:
    def __init__(self) -> None:
        self.shared = default_registry()
        self.registry = r = Registry()
        self.requests = r.counter(
            f"{_P}_requests_total",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
        )
        self.sse_clients = r.gauge(f"{_P}_sse_clients", "SSE connections open.")
        self.upstreams = r.gauge(f"{_P}_sse_upstreams", "Sessions with SSE clients here.")
        self.events_relayed = r.counter(f"{_P}_events_relayed_total", "Events sent to SSE clients.")
        self.slow_clients_cut = r.counter(
            f"{_P}_slow_clients_cut_total", "SSE clients cut off (buffer full)."
        )
        self.connections_reclaimed = r.counter(
            f"{_P}_connections_reclaimed_total",
            "Connections closed: a request too slow to arrive, or a client that stopped reading.",
            ("reason",),
        )
        for reason in ("read_timeout", "send_timeout"):
            self.connections_reclaimed.inc(0, reason=reason)
        self.turns = r.counter(f"{_P}_turns_total", "Turns ended, by outcome.", ("outcome",))
        self.turn_duration = r.histogram(
            f"{_P}_turn_duration_seconds", "Duration of completed turns."
        )
        self.turn_ttft = r.histogram(
            f"{_P}_turn_ttft_seconds", "Time to first token of completed turns."
        )
        self.turns_seen = 0
        self._turn_seen = asyncio.Condition()

    async def render_all(self, upstreams: int) -> str:
        """The gateway's metrics, then everything else in this process's registry."""
        self.upstreams.set(upstreams)
        return self.registry.text() + await self.shared.render()

    async def follow_turns(self, store: EventStore) -> None:
        """Observe terminal events appended from now on (runs until cancelled)."""
        try:
            after = await store.last_position()
            async for rec in store.follow_all(kinds=TERMINAL_KINDS, after=after):
                self.turns.inc(outcome=ended_status(rec.event))
                if isinstance(rec.event, TurnCompleted):
                    self.turn_duration.observe(rec.event.duration_ms / 1000)
                    if rec.event.ttft_ms is not None:
                        self.turn_ttft.observe(rec.event.ttft_ms / 1000)
                async with self._turn_seen:
                    self.turns_seen += 1
                    self._turn_seen.notify_all()
        except ThreadlineError as exc:
            log.warning("turn metrics stopped following the log: %s", exc)

    async def turns_ended(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait until ``count`` turn endings have been observed (for tests)."""
        async with asyncio.timeout(timeout_s), self._turn_seen:
            await self._turn_seen.wait_for(lambda: self.turns_seen >= count)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware counting responses by method, route template and status."""
        routes: dict[str, str] = {}  # path template -> its label

        async def count(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            method = str(scope.get("method", ""))
            template = str(scope.get("path_template") or "unmatched")
            route = routes.get(template)
            if route is None:  # once per route template
                route = routes[template] = _PARAM_RE.sub(r"{\1}", template)

            async def counting_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.requests.inc(method=method, route=route, status=str(message["status"]))
                await send(message)

            await app(scope, receive, counting_send)

        return count
