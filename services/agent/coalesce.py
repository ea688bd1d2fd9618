"""Coalescing token deltas into events: the first at once, then at most one per window.

A fast model must not turn into one event per token (each costs an fsync in
production), and a slow one must not hold text back: the first delta of a step is
appended immediately; later ones are buffered and flushed when the window has passed,
by a timer if no further delta arrives, and at every boundary (tool call, end of step).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from threadline.events.schema import Event, ReasoningDelta, TextDelta

Append = Callable[[Event], Awaitable[object]]


class Coalescer:
    def __init__(self, append: Append, window_s: float) -> None:
        self._append = append
        self._window_s = window_s
        self._kind: type[TextDelta] | type[ReasoningDelta] | None = None
        self._buffer: list[str] = []
        self._step = 0
        self._last_flush = 0.0
        self._sent_in_step = False
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.text = ""  # all answer text of the current step (for partial results)

    def new_step(self, step: int) -> None:
        self._step = step
        self._sent_in_step = False
        self.text = ""

    async def add(self, kind: type[TextDelta] | type[ReasoningDelta], text: str) -> None:
        if not text:
            return
        if kind is TextDelta:
            self.text += text
        if self._kind is not None and kind is not self._kind:
            await self.flush()
        self._kind = kind
        self._buffer.append(text)
        now = time.monotonic()
        if not self._sent_in_step or now - self._last_flush >= self._window_s:
            await self.flush()
        elif self._timer is None:
            delay = self._window_s - (now - self._last_flush)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self.flush())

    async def flush(self) -> None:
        """Append what is buffered (one event), and wait for any timer-driven flush."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        flushing, self._flushing = self._flushing, None
        if flushing is not None and flushing is not asyncio.current_task():
            await flushing
        if not self._buffer or self._kind is None:
            return
        text, self._buffer = "".join(self._buffer), []
        self._sent_in_step = True
        self._last_flush = time.monotonic()
        await self._append(self._kind(text=text, step=self._step))

    def discard(self) -> None:
        """Drop buffered text (the attempt is being abandoned)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buffer.clear()
