"""Prometheus metrics shared by every service, in the text exposition format (no dependency).

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
import bisect
import logging
import math
import re
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

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
_NAME_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

M = TypeVar("M", bound="Metric")
ScrapeHook = Callable[[], Awaitable[None]]
Key = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class Metric:
    """A family of series: one per combination of label values."""

    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames: Key = tuple(labelnames)
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in self.labelnames:
            if not _LABEL_RE.fullmatch(label) or label == "le":
                raise ValueError(f"invalid label name {label!r} for {name}")
        self._lock = threading.Lock()  # instruments may be touched from worker threads

    def _key(self, labels: dict[str, str]) -> Key:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        try:
            return tuple(str(labels[n])[:_MAX_LABEL_CHARS] for n in self.labelnames)
        except KeyError:
            raise ValueError(
                f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}"
            ) from None

    def _labels(self, key: Key, extra: str = "") -> str:
        parts = [f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, key, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def remove(self, **labels: str) -> None:
        """Forget one series (e.g. a view no longer projected here)."""
        with self._lock:
            self._series().pop(self._key(labels), None)

    def clear(self) -> None:
        with self._lock:
            self._series().clear()

    def _series(self) -> dict[Key, Any]:
        raise NotImplementedError

    def samples(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> list[str]:
        with self._lock:
            body = self.samples()
        return [f"# HELP {self.name} {_help(self.help)}", f"# TYPE {self.name} {self.kind}", *body]


class _Valued(Metric):
    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[Key, float] = {}

    def _series(self) -> dict[Key, Any]:
        return self._values

    def set(self, value: float, **labels: str) -> None:
        """Set the value (for a counter: a total sampled from a growing source)."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        return [
            f"{self.name}{self._labels(k)} {_number(v)}" for k, v in sorted(self._values.items())
        ]


class Counter(_Valued):
    """Only goes up (``inc`` with a non-negative amount, or ``set`` from a sampled total)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot go down")
        super().inc(amount, **labels)


class Gauge(_Valued):
    kind = "gauge"

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)


class _Buckets:
    __slots__ = ("counts", "n", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0
        self.n = 0


class Histogram(Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Iterable[str] = (),
        buckets: Iterable[float] = LATENCY_BUCKETS_S,
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        self._data: dict[Key, _Buckets] = {}

    def _series(self) -> dict[Key, Any]:
        return self._data

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            data = self._data.get(key)
            if data is None:
                data = self._data[key] = _Buckets(len(self.buckets) + 1)
            data.counts[bisect.bisect_left(self.buckets, value)] += 1
            data.total += value
            data.n += 1

    def count(self, **labels: str) -> int:
        data = self._data.get(self._key(labels))
        return 0 if data is None else data.n

    def samples(self) -> list[str]:
        out: list[str] = []
        bounds = [*(f'le="{b!r}"' for b in self.buckets), 'le="+Inf"']
        for key, data in sorted(self._data.items()):
            running = 0
            for bound, count in zip(bounds, data.counts, strict=True):
                running += count
                out.append(f"{self.name}_bucket{self._labels(key, bound)} {running}")
            out.append(f"{self.name}_sum{self._labels(key)} {_number(data.total)}")
            out.append(f"{self.name}_count{self._labels(key)} {data.n}")
        return out


class Registry:
    """The instruments of one process, and the hooks that sample values when scraped."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._hooks: list[ScrapeHook] = []
        self._lock = threading.Lock()

    def _get(self, cls: type[M], name: str, make: Callable[[], M], labels: Key) -> M:
        with self._lock:
            existing = self._metrics.get(name)
            if existing is None:
                created = self._metrics[name] = make()
                return created
        if type(existing) is not cls or existing.labelnames != labels:
            raise ValueError(
                f"metric {name} already exists as {existing.kind} {existing.labelnames}"
            )
        return existing

    def counter(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
        """The counter ``name`` (made on first use; the same object afterwards)."""
        key = tuple(labels)
        return self._get(Counter, name, lambda: Counter(name, help_text, key), key)

    def gauge(self, name: str, help_text: str, labels: Iterable[str] = ()) -> Gauge:
        key = tuple(labels)
        return self._get(Gauge, name, lambda: Gauge(name, help_text, key), key)

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Iterable[str] = (),
        buckets: Iterable[float] = LATENCY_BUCKETS_S,
    ) -> Histogram:
        key, bounds = tuple(labels), tuple(buckets)
        return self._get(Histogram, name, lambda: Histogram(name, help_text, key, bounds), key)

    def get(self, name: str) -> Metric | None:
        return self._metrics.get(name)

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
        results = await asyncio.gather(*(self._run(h) for h in hooks), return_exceptions=True)
        for hook, result in zip(hooks, results, strict=True):
            if isinstance(result, Exception):
                log.debug("metrics hook %r failed: %r", hook, result)

    @staticmethod
    async def _run(hook: ScrapeHook) -> None:
        async with asyncio.timeout(SCRAPE_HOOK_TIMEOUT_S):
            await hook()

    def text(self) -> str:
        """The exposition text of the current values (no hooks run)."""
        with self._lock:
            metrics = sorted(self._metrics.values(), key=lambda m: m.name)
        lines = [line for metric in metrics for line in metric.render()]
        return "\n".join(lines) + "\n" if lines else ""

    async def render(self) -> str:
        """Sample what is sampled when scraped, then the exposition text."""
        await self.collect()
        return self.text()


_DEFAULT: Final = Registry()


def default_registry() -> Registry:
    """The process-wide registry every service uses unless given another."""
    return _DEFAULT
