"""The delta coalescer and its load-adaptive window, on an injected clock and load.

Windows here are many seconds long and the clock is a variable, so no flush timer fires
while a test runs: what is appended is decided by ``add`` alone (or an explicit flush).
"""

from __future__ import annotations

import asyncio

import pytest

from threadline.events.schema import Event, ReasoningDelta, TextDelta
from threadline.services.agent.coalesce import MAX_STRETCH, Coalescer, WorkerLoad

WINDOW = 10.0  # seconds of the fake clock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Log:
    """The append callback: records what the coalescer appends."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, TextDelta | ReasoningDelta)]


def busy(load: WorkerLoad, level: float) -> None:
    """Put ``load`` at ``level`` through its appends-in-flight signal."""
    load.appends_in_flight = round(level * load.busy_appends)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def load(clock: Clock) -> WorkerLoad:
    return WorkerLoad(busy_appends=4, clock=clock, cpu_clock=lambda: 0.0)


async def test_the_first_delta_of_a_step_is_never_held_even_when_busy(
    clock: Clock, load: WorkerLoad
) -> None:
    log = Log()
    coalescer = Coalescer(log, WINDOW, load=load, clock=clock)
    busy(load, 1.0)
    coalescer.new_step(0)
    await coalescer.add(TextDelta, "first")
    await coalescer.add(TextDelta, "held")
    assert log.texts == ["first"]
    await coalescer.flush()  # the step's boundary
    coalescer.new_step(1)
    await coalescer.add(TextDelta, "next step")
    assert log.texts == ["first", "held", "next step"]
    assert [e.step for e in log.events] == [0, 0, 1]  # type: ignore[attr-defined]
    coalescer.discard()


async def test_the_window_grows_with_load_bounded_and_shrinks_back(
    clock: Clock, load: WorkerLoad
) -> None:
    log = Log()
    coalescer = Coalescer(log, WINDOW, load=load, clock=clock)
    assert coalescer.window_s == WINDOW
    busy(load, 0.5)
    assert coalescer.window_s == WINDOW * (1 + (MAX_STRETCH - 1) / 2)
    load.appends_in_flight = 100 * load.busy_appends  # far past busy: still bounded
    assert coalescer.window_s == WINDOW * MAX_STRETCH

    busy(load, 0.0)
    await coalescer.add(TextDelta, "a")  # t=0: the first, at once
    clock.now += WINDOW
    await coalescer.add(TextDelta, "b")  # one idle window later: appended
    busy(load, 1.0)
    clock.now += WINDOW
    await coalescer.add(TextDelta, "c")  # busy: one window is not enough any more
    clock.now += (MAX_STRETCH - 1) * WINDOW - 0.001
    await coalescer.add(TextDelta, "d")
    assert log.texts == ["a", "b"]
    clock.now += 0.001
    await coalescer.add(TextDelta, "e")  # the stretched window has passed
    assert log.texts == ["a", "b", "cde"]
    busy(load, 0.0)  # idle again: back to the configured window
    clock.now += WINDOW
    await coalescer.add(TextDelta, "f")
    assert log.texts == ["a", "b", "cde", "f"]
    coalescer.discard()


async def test_late_timers_raise_the_load_and_it_decays_when_they_stop(
    clock: Clock, load: WorkerLoad
) -> None:
    assert load.level() == 0.0
    load.timer_late(4 * load.busy_lag_s)  # a quarter of it enters the moving average
    assert load.level() == pytest.approx(1.0)
    clock.now += load.half_life_s  # no late timer since: it halves
    assert load.level() == pytest.approx(0.5)
    clock.now += load.half_life_s
    assert load.level() == pytest.approx(0.25)
    load.timer_late(-0.001)  # early (clock resolution) counts as on time
    assert load.level() == pytest.approx(0.25 * 0.75)
    clock.now += 10 * load.half_life_s
    assert load.level() < 0.001
    coalescer = Coalescer(Log(), WINDOW, load=load, clock=clock)
    assert coalescer.window_s == pytest.approx(WINDOW, rel=0.01)


async def test_a_process_using_much_of_a_core_stretches_the_window(clock: Clock) -> None:
    """The CPU signal: the share of a core used since it was last read (at most every
    ``cpu_every_s``), nothing up to ``idle_cpu``, busy at ``busy_cpu``."""
    cpu = Clock()
    load = WorkerLoad(clock=clock, cpu_clock=cpu, idle_cpu=0.2, busy_cpu=0.7, cpu_every_s=0.5)
    coalescer = Coalescer(Log(), WINDOW, load=load, clock=clock)
    clock.now += 1.0
    cpu.now += 0.45  # 45 % of a core over the last second: half-way to busy
    assert load.level() == pytest.approx(0.5)
    assert coalescer.window_s == pytest.approx(WINDOW * (1 + (MAX_STRETCH - 1) / 2))
    clock.now += 0.25
    cpu.now += 5.0  # not read again before cpu_every_s has passed
    assert load.level() == pytest.approx(0.5)
    clock.now += 0.25  # now it is: far past busy, and bounded
    assert load.level() == 1.0
    assert coalescer.window_s == WINDOW * MAX_STRETCH
    clock.now += 1.0
    cpu.now += 0.15  # 15 % of a core: idle
    assert load.level() == 0.0
    assert coalescer.window_s == WINDOW


async def test_a_turn_waiting_on_its_append_makes_the_others_wait_longer(
    clock: Clock,
) -> None:
    """The appends-in-flight signal, measured: one turn blocked in an append stretches
    the window of another turn of the same process."""
    load = WorkerLoad(busy_appends=1, clock=clock, cpu_clock=lambda: 0.0)
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow_append(event: Event) -> None:
        started.set()
        await release.wait()

    slow = Coalescer(slow_append, WINDOW, load=load, clock=clock)
    other = Coalescer(Log(), WINDOW, load=load, clock=clock)
    pending = asyncio.create_task(slow.add(TextDelta, "stuck"))
    await started.wait()
    assert load.appends_in_flight == 1
    assert other.window_s == WINDOW * MAX_STRETCH
    release.set()
    await pending
    assert load.appends_in_flight == 0
    assert other.window_s == WINDOW


async def test_a_failed_append_is_no_longer_in_flight(clock: Clock, load: WorkerLoad) -> None:
    async def broken(event: Event) -> None:
        raise ConnectionError("store down")

    with pytest.raises(ConnectionError):
        await Coalescer(broken, WINDOW, load=load, clock=clock).add(TextDelta, "x")
    assert load.appends_in_flight == 0


async def test_no_delta_carries_more_than_max_chars(clock: Clock, load: WorkerLoad) -> None:
    """A buffer that reaches ``max_chars`` is written at once, in pieces that fit."""
    log = Log()
    coalescer = Coalescer(log, WINDOW, load=load, clock=clock, max_chars=4)
    await coalescer.add(TextDelta, "ab")  # the first: at once
    await coalescer.add(TextDelta, "cd")  # buffered
    assert log.texts == ["ab"]
    await coalescer.add(TextDelta, "efghijk")  # 9 buffered: over the limit, written now
    assert log.texts == ["ab", "cdef", "ghij", "k"]
    await coalescer.flush()
    assert "".join(log.texts) == coalescer.text == "abcdefghijk"
