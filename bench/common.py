"""Helpers shared by the benchmarks: a throwaway nats-server, stats, progress, reports."""

from __future__ import annotations

import contextlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from threadline.services.runtime.natsserver import EmbeddedNats


@contextlib.asynccontextmanager
async def nats_server() -> AsyncIterator[EmbeddedNats]:
    with tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp:
        async with EmbeddedNats(Path(tmp)) as server:
            yield server


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
