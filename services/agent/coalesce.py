"""Coalescing token deltas into events: the first at once, then at most one per window.

A fast model must not turn into one event per token (each costs an append, an fsync in
production), and a slow one must not hold text back: the first delta of a step is
appended immediately; later ones are buffered and flushed when the window has passed,
by a timer if no further delta arrives, and at every boundary (tool call, end of step).
No delta event carries more than ``max_chars`` characters: a larger buffer is flushed at
once, in pieces that fit an event (the store's size limit).

The window adapts to load (:class:`WorkerLoad`): from the configured window when the
process is idle up to :data:`MAX_STRETCH` times it when it is busy, so a saturated
worker writes fewer, larger events instead of falling further behind; it shrinks back
as the load goes. The first delta of a step is never held, whatever the load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from threadline.events.schema import Event, ReasoningDelta, TextDelta

__all__ = ["MAX_STRETCH", "PROCESS_LOAD", "Coalescer", "WorkerLoad"]

Append = Callable[[Event], Awaitable[object]]
Clock = Callable[[], float]

#: the most the window stretches under load (4 x 50 ms by default)
MAX_STRETCH: Final = 4.0


@dataclass(eq=False, kw_only=True)
class WorkerLoad:
    """How busy this agent process is, as its coalescers see it: 0 (idle) to 1 (busy).

    Three signals, all cheap to measure: delta appends in flight (each streaming turn
    waits on its own, so many at once means the store or the loop is behind;
    ``busy_appends`` of them is busy); how late the coalescers' flush timers fire,
    i.e. event-loop lag (``busy_lag_s`` is busy), kept as a moving average that decays
    with ``half_life_s`` so that, without late timers, the load falls back to idle; and
    the share of a core the process used over the last ``cpu_every_s`` or more
    (``cpu_clock``, read at most that often): nothing up to ``idle_cpu``, busy at
    ``busy_cpu``. One event loop saturates at one core, and the CPU share says so well
    before timers run late: at 50 streaming turns the agent uses about half a core.
    """

    busy_appends: int = 8
    busy_lag_s: float = 0.010
    half_life_s: float = 1.0
    idle_cpu: float = 0.2
    busy_cpu: float = 0.7
    cpu_every_s: float = 0.5
    clock: Clock = time.monotonic
    cpu_clock: Clock = time.process_time

    def __post_init__(self) -> None:
        self.appends_in_flight = 0
        self._lag_s = self._cpu_level = 0.0
        self._lag_at = self._cpu_at = self.clock()
        self._cpu_used = self.cpu_clock()

    def timer_late(self, late_s: float) -> None:
        """A flush timer fired ``late_s`` after it was due."""
        now = self.clock()
        lag = self._lag_now(now)
        self._lag_s = lag + (max(late_s, 0.0) - lag) * 0.25
        self._lag_at = now

    def level(self) -> float:
        """Read at every delta a coalescer buffers: no lag to decay, no CPU reading due
        costs a clock read and a few comparisons."""
        now = self.clock()
        level = self.appends_in_flight / self.busy_appends
        if self._lag_s:
            level = max(level, self._lag_now(now) / self.busy_lag_s)
        if now - self._cpu_at >= self.cpu_every_s:
            self._cpu_now(now)
        return min(1.0, max(level, self._cpu_level))

    def _cpu_now(self, now: float) -> None:
        """Measure the CPU signal (0 to 1) again (``cpu_every_s`` has passed)."""
        used = self.cpu_clock()
        share = (used - self._cpu_used) / (now - self._cpu_at)
        span = self.busy_cpu - self.idle_cpu
        self._cpu_level = min(1.0, max(0.0, (share - self.idle_cpu) / span))
        self._cpu_at, self._cpu_used = now, used

    def _lag_now(self, now: float) -> float:
        lag = self._lag_s * float(0.5 ** ((now - self._lag_at) / self.half_life_s))
        if lag < self.busy_lag_s * 1e-6:  # decayed to nothing: no more decaying
            self._lag_s = lag = 0.0
        return lag


#: the load every coalescer of this process reports to and reads, by default
PROCESS_LOAD: Final = WorkerLoad()


class Coalescer:
    """Buffers one turn's deltas; ``window_s`` is the window when the process is idle."""

    def __init__(
        self,
        append: Append,
        window_s: float,
        *,
        load: WorkerLoad | None = None,
        clock: Clock = time.monotonic,
        max_chars: int = 1 << 62,
    ) -> None:
        self._append = append
        self._max_chars = max_chars
        self._base_window_s = window_s
        self._load = load if load is not None else PROCESS_LOAD
        self._clock = clock
        self._kind: type[TextDelta] | type[ReasoningDelta] | None = None
        self._buffer: list[str] = []
        self._buffered = 0
        self._step = 0
        self._last_flush = 0.0
        self._sent_in_step = False
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._text: list[str] = []  # the answer text of the current step, in pieces

    @property
    def text(self) -> str:
        """All answer text of the current step (for partial results): joined when read,
        not per delta (a string grown per delta is copied whole every time)."""
        if len(self._text) > 1:
            self._text[:] = ["".join(self._text)]
        return self._text[0] if self._text else ""

    @property
    def window_s(self) -> float:
        """The window now: the configured one, stretched by the process's load."""
        return self._base_window_s * (1.0 + (MAX_STRETCH - 1.0) * self._load.level())

    def new_step(self, step: int) -> None:
        self._step = step
        self._sent_in_step = False
        self._text = []

    async def add(self, kind: type[TextDelta] | type[ReasoningDelta], text: str) -> None:
        if not text:
            return
        if kind is TextDelta:
            self._text.append(text)
        if self._kind is not None and kind is not self._kind:
            await self.flush()
        self._kind = kind
        self._buffer.append(text)
        self._buffered += len(text)
        due_in = self.window_s - (self._clock() - self._last_flush)
        if not self._sent_in_step or self._buffered >= self._max_chars or due_in <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(due_in, self._on_timer)

    def _on_timer(self) -> None:
        due, self._timer = self._timer, None
        if due is not None:  # how late the loop ran it: its lag
            self._load.timer_late(asyncio.get_running_loop().time() - due.when())
        flushing = self._flushing
        if flushing is not None and (not flushing.done() or _failed(flushing)):
            return  # running; or failed, and the next flush() raises its error
        self._flushing = asyncio.create_task(self.flush())

    async def flush(self) -> None:
        """Append what is buffered (one event), and wait for any timer-driven flush."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        flushing = self._flushing
        if flushing is not None and flushing is not asyncio.current_task():
            self._flushing = None
            await flushing
        if not self._buffer or self._kind is None:
            return
        text, self._buffer, self._buffered = "".join(self._buffer), [], 0
        self._sent_in_step = True
        self._last_flush = self._clock()
        self._load.appends_in_flight += 1
        try:
            for start in range(0, len(text), self._max_chars):
                piece = text[start : start + self._max_chars]
                await self._append(self._kind(text=piece, step=self._step))
        finally:
            self._load.appends_in_flight -= 1

    def discard(self) -> None:
        """Drop buffered text (the attempt is being abandoned)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buffer.clear()
        self._buffered = 0
        if self._flushing is not None and _failed(self._flushing):
            self._flushing = None  # abandoned with the attempt (its error was seen)


def _failed(task: asyncio.Task[None]) -> bool:
    """A timer-driven flush that failed (its text is not in the log): never dropped."""
    return not task.cancelled() and task.exception() is not None
