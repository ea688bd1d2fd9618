"""Open loop with think time: C people chatting at once, each reading the answer and
thinking before the next message.

Each level on a fresh stack (``bench/e2e_stack.py``). C conversations, each one session
with its SSE stream open all along (``bench/e2e_client.Conversation``): it sends a
message (50 words at 50 tokens/s), reads the answer to its end, thinks, and sends the
next, until the phase's duration is over (no turn starts after it; turns under way are
waited for). Think times are **exponential** with the given mean (seeded per
conversation, so every run draws the same ones); each conversation starts at a uniform
random moment within the first mean think time, so arrivals do not come in a burst.
The offered load is about C / (think + answer time) turns/s, whatever the system does.

Before it, in the same shape and on the same stack, the **direct** baseline: C loops
asking the dev model straight for the same answer, read raw (``bench/stream_client.py``;
not the ``openai`` SDK, whose client would saturate first at 1,000 conversations).
Reported: errors, completed turns/s, time to first token and what Threadline adds to the
direct one, CPU per process and per turn. ``python -m bench.openloop [--conversations C]
[--think S] [--duration S]`` runs one level alone (``--conversations 20 --think 1
--duration 20`` is a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.common import median, percentile, progress
from bench.e2e_client import OPEN_TIMEOUT_S, TURN_TIMEOUT_S, WORDS, Conversation, Tally, ticking
from bench.e2e_stack import DEV_TOKENS_PER_S, PER_OWNER, Stack, running_stack, wait_quiet
from bench.meter import Meter, Spent
from bench.stream_client import StreamClient, openai_wire

#: (conversations, mean think time s, duration s)
FULL_LEVELS = [(200, 20.0, 120.0), (1000, 20.0, 120.0)]
QUICK_LEVELS = [(20, 1.0, 20.0)]
SERVING = ["nats-server", "agent", "gateway"]
SEED = 11
TARGET_CONVERSATIONS = 1000
TARGET_ADDED_P99_MS = 100.0

#: one turn of a conversation: (TTFT ms, duration s)
Turn = Callable[[], Awaitable[tuple[float, float]]]
#: a conversation opened: its turn, and what closes it
Opened = tuple[Turn, Callable[[], None]]
#: opens conversation i
Opener = Callable[[int], Awaitable[Opened]]


@dataclass(frozen=True)
class Phase:
    tally: Tally
    wall: float
    spent: Spent

    @property
    def rate(self) -> float:
        return self.tally.done / self.wall if self.wall else 0.0

    def ttft(self, q: float) -> float:
        return median(self.tally.ttft_ms) if q == 50 else percentile(self.tally.ttft_ms, q)

    def ms_per_turn(self, *names: str) -> float:
        return self.spent.per_turn_ms(names, self.tally.done)


@dataclass(frozen=True)
class Level:
    conversations: int
    think_s: float
    duration_s: float
    direct: Phase
    threadline: Phase


async def open_loop(
    c: int, think_s: float, duration_s: float, opener: Opener, tally: Tally
) -> float:
    """``c`` conversations in the shape above; returns the wall time until the last turn
    ended. A conversation stops at its first error (counted), or when its next message
    would come after the deadline."""
    start = time.perf_counter()
    deadline = start + duration_s
    last_end = start

    async def conversation(i: int) -> None:
        nonlocal last_end
        rng = random.Random(f"{SEED}-{i}")
        await asyncio.sleep(rng.uniform(0, think_s))
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                turn, close = await opener(i)
        except Exception as exc:  # any failure is an error of the system under test
            tally.started += 1
            tally.fail(exc)
            return
        try:
            while True:
                tally.started += 1
                async with asyncio.timeout(TURN_TIMEOUT_S):
                    ttft, duration = await turn()
                tally.ttft_ms.append(ttft)
                tally.duration_s.append(duration)
                last_end = max(last_end, time.perf_counter())
                think = rng.expovariate(1 / think_s)  # the user reads and thinks
                if time.perf_counter() + think >= deadline:
                    return
                await asyncio.sleep(think)
        except Exception as exc:
            tally.fail(exc)
        finally:
            close()

    async with asyncio.timeout(duration_s + think_s + TURN_TIMEOUT_S + OPEN_TIMEOUT_S + 60):
        await asyncio.gather(*(conversation(i) for i in range(c)))
    return last_end - start


def _direct_opener(stack: Stack) -> Opener:
    client = StreamClient(stack.devmodel_url, openai_wire())

    async def opener(_i: int) -> Opened:
        return (lambda: client.turn(0, 0)), (lambda: None)

    return opener


def _threadline_opener(stack: Stack, tally: Tally) -> Opener:
    async def opener(i: int) -> Opened:
        conv = Conversation(stack.gateway_url, stack.token_for(i))
        start = time.perf_counter()
        try:
            await conv.open()
        except BaseException:
            conv.close()
            raise
        tally.open_ms.append((time.perf_counter() - start) * 1000)
        return conv.turn, conv.close

    return opener


async def _phase(label: str, stack: Stack, level: tuple[int, float, float], direct: bool) -> Phase:
    c, think_s, duration_s = level
    tally = Tally()
    opener = _direct_opener(stack) if direct else _threadline_opener(stack, tally)
    meter = Meter(stack.pids)
    async with ticking(label, tally.line):
        wall = await open_loop(c, think_s, duration_s, opener, tally)
    return Phase(tally, wall, meter.done())


async def run_level(c: int, think_s: float, duration_s: float, *, quiet_wait_s: float) -> Level:
    label = f"open loop, {c} conversations, think {think_s:g} s"
    busy = await wait_quiet(max_wait_s=quiet_wait_s)
    progress(f"{label}: starting the stack ({busy:.2f} CPUs busy)")
    async with running_stack(c, sync_always=False) as stack:
        shape = (c, think_s, duration_s)
        direct = await _phase(f"{label}: direct", stack, shape, direct=True)
        threadline = await _phase(f"{label}: Threadline", stack, shape, direct=False)
    return Level(c, think_s, duration_s, direct, threadline)


# --------------------------------------------------------------------------- report


def _pair(a: float, b: float, fmt: str = ".1f") -> str:
    return f"{a:{fmt}} / {b:{fmt}}"


def _rows(levels: list[Level]) -> list[str]:
    rows = [
        "| conversations | think (s, mean) | duration (s) | turns, direct / Threadline | "
        "turns/s, direct / Threadline | errors, direct / Threadline | TTFT p50 / p99 direct "
        "(ms) | TTFT p50 / p99 Threadline (ms) | added p50 / p99 (ms) | session and stream "
        "open p50 / p99 (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for lv in levels:
        d, t = lv.direct, lv.threadline
        added = _pair(t.ttft(50) - d.ttft(50), t.ttft(99) - d.ttft(99), "+.1f")
        rows.append(
            f"| {lv.conversations:,} | {lv.think_s:g} | {lv.duration_s:g} | "
            f"{d.tally.done:,} / {t.tally.done:,} | {_pair(d.rate, t.rate)} | "
            f"{d.tally.errors.total()} / {t.tally.errors.total()} | "
            f"{_pair(d.ttft(50), d.ttft(99))} | {_pair(t.ttft(50), t.ttft(99))} | {added} | "
            f"{_pair(median(t.tally.open_ms), percentile(t.tally.open_ms, 99))} |"
        )
    return rows


def _cpu(levels: list[Level]) -> list[str]:
    rows = [
        "| conversations | phase | nats-server | dev model | agent | gateway | clients | "
        "serving path per turn (ms) | whole machine busy (elsewhere) | speed check (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for lv in levels:
        for name, phase in (("direct", lv.direct), ("Threadline", lv.threadline)):
            s = phase.spent
            cells = " | ".join(
                f"{s.cpu[p]:.1f} s ({s.cpu[p] / s.wall:.0%})"
                for p in ("nats-server", "devmodel", "agent", "gateway", "bench")
            )
            rows.append(
                f"| {lv.conversations:,} | {name} | {cells} | {phase.ms_per_turn(*SERVING):.0f} "
                f"| {s.machine:.1f} s ({s.elsewhere_cpus * s.wall:.1f} s) | {s.speed_ms:.0f} |"
            )
    return rows


def _verdicts(levels: list[Level]) -> list[str]:
    lines = []
    for lv in levels:
        errors = lv.threadline.tally.errors
        added = lv.threadline.ttft(99) - lv.direct.ttft(99)
        if lv.conversations == TARGET_CONVERSATIONS:
            met = errors.total() == 0 and added <= TARGET_ADDED_P99_MS
            lines.append(
                f"Target (open loop, {TARGET_CONVERSATIONS:,} conversations: 0 errors, added "
                f"TTFT p99 at most {TARGET_ADDED_P99_MS:.0f} ms): {'met' if met else 'NOT met'}"
                f", measured {errors.total()} errors and {added:+.1f} ms."
            )
        for phase in (lv.direct, lv.threadline):
            lines += [
                f"Errors at {lv.conversations:,}: {count} x `{kind}`."
                for kind, count in phase.tally.errors.most_common(3)
            ]
    return lines


def report(levels: list[Level]) -> list[str]:
    return [
        f"Each level on a fresh stack; C conversations each sending a message ({WORDS}-word "
        f"answer at {DEV_TOKENS_PER_S} tokens/s), reading the answer, thinking (exponential, "
        "the mean given) and sending the next, for the duration given; the direct baseline "
        f"first, in the same shape. {PER_OWNER} conversations per owner.",
        "",
        *_rows(levels),
        "",
        "CPU seconds (share of one core) per process over each phase:",
        "",
        *_cpu(levels),
        "",
        *_verdicts(levels),
    ]


async def run(
    *, quick: bool = False, levels: list[tuple[int, float, float]] | None = None
) -> list[str]:
    plan = levels or (QUICK_LEVELS if quick else FULL_LEVELS)
    measured = []
    for index, (c, think_s, duration_s) in enumerate(plan, 1):
        progress(f"open loop, level {index}/{len(plan)}")
        measured.append(await run_level(c, think_s, duration_s, quiet_wait_s=20 if quick else 300))
    return report(measured)


if __name__ == "__main__":  # python -m bench.openloop [...]: one level alone
    parser = argparse.ArgumentParser(prog="python -m bench.openloop")
    parser.add_argument("--conversations", type=int, help="conversations at once")
    parser.add_argument("--think", type=float, default=20.0, help="mean think time (s)")
    parser.add_argument("--duration", type=float, default=120.0, help="phase length (s)")
    args = parser.parse_args()
    chosen = [(args.conversations, args.think, args.duration)] if args.conversations else None
    print("\n".join(asyncio.run(run(levels=chosen))))
    sys.exit(0)
