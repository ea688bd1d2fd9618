"""Prometheus metrics shared by every service, on ``prometheus_client``.

One :class:`Registry` per process (:func:`default_registry`) holds the agent's, the
projector's and any other service's instruments; whoever serves ``/metrics`` (the
gateway under ``threadline up``, ``--metrics-port`` of a standalone service) renders it::

    turns = default_registry().counter("threadline_agent_turns_total", "Turns ended.", ("outcome",))
    turns.inc(outcome="completed")

Values that are cheaper to read than to track (a consumer's backlog, a view's lag) are
sampled when scraped: :meth:`Registry.on_scrape` registers an async hook that sets them,
run before each rendering (each with a time limit; a failing hook leaves its values as
they were). Label values are names (provider, model, tool, view, outcome), never user
text, ids or secrets: instruments do not check that, their callers must.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

#: the exposition format's media type; as a content type, with its charset
MEDIA_TYPE: Final = "text/plain; version=0.0.4"
CONTENT_TYPE: Final = f"{MEDIA_TYPE}; charset=utf-8"
#: seconds, for latencies from a few milliseconds (a tool) to minutes (a long turn)
LATENCY_BUCKETS_S: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
SCRAPE_HOOK_TIMEOUT_S: Final = 2.0
_MAX_LABEL_CHARS: Final = 128
_NAME_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")  # the text format's (no UTF-8)

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created

M = TypeVar("M", bound="Metric")
ScrapeHook = Callable[[], Awaitable[None]]


class Metric:
    """A family of series (one per combination of label values), labelled by keyword."""

    family: Any  # prometheus_client's class
    sample = ""  # the suffix of the series :meth:`value` reads

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help_text: str,
        labelnames: tuple[str, ...],
        **options: Any,
    ) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.name = name
        self.labelnames = labelnames
        self._registry = registry
        self._family = self.family(name, help_text, labelnames, registry=registry, **options)

    def _values(self, labels: dict[str, str]) -> dict[str, str]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return {name: str(value)[:_MAX_LABEL_CHARS] for name, value in labels.items()}

    def _child(self, labels: dict[str, str]) -> Any:
        return self._family.labels(**self._values(labels)) if labels else self._family

    def remove(self, **labels: str) -> None:
        """Forget one series (e.g. a view no longer projected here)."""
        values = self._values(labels)
        with contextlib.suppress(KeyError):
            self._family.remove(*(values[name] for name in self.labelnames))

    def clear(self) -> None:
        self._family.clear()

    def value(self, **labels: str) -> float:
        found = self._registry.get_sample_value(self.name + self.sample, self._values(labels))
        return found or 0.0


class Counter(Metric):
    """Only goes up (``inc`` with a non-negative amount, or ``set`` from a sampled total)."""

    family = prometheus_client.Counter

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).inc(amount)

    def set(self, value: float, **labels: str) -> None:
        """Bring the total up to ``value``, sampled from a source that only grows."""
        self.inc(max(0.0, value - self.value(**labels)), **labels)


class Gauge(Metric):
    family = prometheus_client.Gauge

    def set(self, value: float, **labels: str) -> None:
        self._child(labels).set(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).inc(amount)

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).dec(amount)


class Histogram(Metric):
    family = prometheus_client.Histogram
    sample = "_count"

    def observe(self, value: float, **labels: str) -> None:
        self._child(labels).observe(value)


class Registry:
    """The instruments of one process, and the hooks that sample values when scraped."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Metric] = {}
        self._hooks: list[ScrapeHook] = []
        self._lock = threading.Lock()

    def _get(self, cls: type[M], name: str, help_text: str, labels: Iterable[str], **kw: Any) -> M:
        """The instrument ``name`` (made on first use; the same object afterwards)."""
        key = tuple(labels)
        with self._lock:
            existing = self._metrics.get(name)
            if existing is None:
                made = self._metrics[name] = cls(self._registry, name, help_text, key, **kw)
                return made
        if type(existing) is not cls or existing.labelnames != key:
            raise ValueError(f"metric {name} already exists as {type(existing).__name__}")
        return existing

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
        return self._get(Counter, name, help_text, labels)

    def gauge(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Gauge:
        return self._get(Gauge, name, help_text, labels)

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Iterable[str] = (),
        buckets: Iterable[float] = LATENCY_BUCKETS_S,
    ) -> Histogram:
        return self._get(Histogram, name, help_text, labels, buckets=tuple(buckets))

    def on_scrape(self, hook: ScrapeHook) -> Callable[[], None]:
        """Run ``hook`` before every rendering; returns a function that removes it."""
        self._hooks.append(hook)

        def remove() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)

        return remove

    async def collect(self) -> None:
        """Run the scrape hooks (concurrently, each within its time limit)."""
        hooks = list(self._hooks)
        runs = (asyncio.wait_for(hook(), SCRAPE_HOOK_TIMEOUT_S) for hook in hooks)
        results = await asyncio.gather(*runs, return_exceptions=True)
        for hook, result in zip(hooks, results, strict=True):
            if isinstance(result, Exception):
                log.debug("metrics hook %r failed: %r", hook, result)

    def text(self) -> str:
        """The exposition text of the current values (no hooks run)."""
        return generate_latest(self._registry).decode()

    async def render(self) -> str:
        """Sample what is sampled when scraped, then the exposition text."""
        await self.collect()
        return self.text()


_DEFAULT: Final = Registry()


def default_registry() -> Registry:
    """The process-wide registry every service uses unless given another."""
    return _DEFAULT
