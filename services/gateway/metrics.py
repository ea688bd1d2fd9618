"""Prometheus metrics, written in the text exposition format by hand (no dependency).

Labels never carry owners, session ids or tokens: only methods, route templates,
statuses and outcomes. Turn latencies come from the terminal events this gateway sees
on the log (one ``follow_all`` of the three terminal kinds). ``/metrics`` also shows the
process's shared registry (:mod:`threadline.base.metrics`): under ``threadline up``
the agent's and the projector's metrics, projection lag included.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import re
from collections import Counter
from typing import Final

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from threadline.base.errors import ThreadlineError
from threadline.base.metrics import Registry, default_registry
from threadline.events.schema import TERMINAL_KINDS, TurnCompleted
from threadline.events.store import EventStore
from threadline.events.turns import ended_status

log = logging.getLogger(__name__)

_BUCKETS_S: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_PARAM_RE: Final = re.compile(r"\{(\w+):\w+\}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = _BUCKETS_S) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def render(self, name: str) -> list[str]:
        lines, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'{name}_bucket{{le="{le}"}} {running}')
        return [*lines, f"{name}_sum {self.total}", f"{name}_count {self.n}"]


class Metrics:
    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or default_registry()
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.sse_clients = 0
        self.events_relayed = 0
        self.slow_clients_cut = 0
        #: connections closed by the server: a request too slow to arrive, a client
        #: that stopped reading (``read_timeout``, ``send_timeout``)
        self.connections_reclaimed: Counter[str] = Counter()
        self.turns: Counter[str] = Counter()
        self.turn_duration = Histogram()
        self.turn_ttft = Histogram()
        self._turn_seen = asyncio.Condition()

    def relayed(self, count: int) -> None:
        self.events_relayed += count

    def cut(self) -> None:
        self.slow_clients_cut += 1

    def reclaimed(self, reason: str) -> None:
        self.connections_reclaimed[reason] += 1

    def render(self, upstreams: int) -> str:
        p = "threadline_gateway"
        out = [
            f"# HELP {p}_requests_total HTTP requests by method, route template and status.",
            f"# TYPE {p}_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(
                f"{p}_requests_total{_labels(method=method, route=route, status=status)} {n}"
            )
        out += _gauge(f"{p}_sse_clients", "SSE connections open.", self.sse_clients)
        out += _gauge(f"{p}_sse_upstreams", "Upstream session follows running.", upstreams)
        out += _counter(
            f"{p}_events_relayed_total", "Events sent to SSE clients.", self.events_relayed
        )
        out += _counter(
            f"{p}_slow_clients_cut_total",
            "SSE clients cut off (buffer full).",
            self.slow_clients_cut,
        )
        out += [
            f"# HELP {p}_connections_reclaimed_total Connections closed: a request too slow "
            "to arrive, or a client that stopped reading.",
            f"# TYPE {p}_connections_reclaimed_total counter",
        ]
        out += [
            f"{p}_connections_reclaimed_total{_labels(reason=r)} {self.connections_reclaimed[r]}"
            for r in ("read_timeout", "send_timeout")
        ]
        out += [
            f"# HELP {p}_turns_total Turns ended, by outcome.",
            f"# TYPE {p}_turns_total counter",
        ]
        out += [f"{p}_turns_total{_labels(outcome=o)} {n}" for o, n in sorted(self.turns.items())]
        for name, hist, text in (
            ("turn_duration_seconds", self.turn_duration, "Duration of completed turns."),
            ("turn_ttft_seconds", self.turn_ttft, "Time to first token of completed turns."),
        ):
            out += [f"# HELP {p}_{name} {text}", f"# TYPE {p}_{name} histogram"]
            out += hist.render(f"{p}_{name}")
        return "\n".join(out) + "\n"

    async def render_all(self, upstreams: int) -> str:
        """The gateway's metrics, then everything else in this process's registry."""
        return self.render(upstreams) + await self.registry.render()

    async def follow_turns(self, store: EventStore) -> None:
        """Observe terminal events appended from now on (runs until cancelled)."""
        try:
            after = await store.last_position()
            async for rec in store.follow_all(kinds=TERMINAL_KINDS, after=after):
                self.turns[ended_status(rec.event)] += 1
                if isinstance(rec.event, TurnCompleted):
                    self.turn_duration.observe(rec.event.duration_ms / 1000)
                    if rec.event.ttft_ms is not None:
                        self.turn_ttft.observe(rec.event.ttft_ms / 1000)
                async with self._turn_seen:
                    self._turn_seen.notify_all()
        except ThreadlineError as exc:
            log.warning("turn metrics stopped following the log: %s", exc)

    async def turns_ended(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait until ``count`` turn endings have been observed (for tests)."""
        async with asyncio.timeout(timeout_s), self._turn_seen:
            await self._turn_seen.wait_for(lambda: sum(self.turns.values()) >= count)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware counting responses by method, route template and status."""

        async def count(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            method = str(scope.get("method", ""))
            route = _PARAM_RE.sub(r"{\1}", str(scope.get("path_template") or "unmatched"))

            async def counting_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.requests[(method, route, str(message["status"]))] += 1
                await send(message)

            await app(scope, receive, counting_send)

        return count


def _gauge(name: str, text: str, value: float) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]


def _counter(name: str, text: str, value: float) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {value}"]
