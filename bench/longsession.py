"""One long session: does a turn cost the same at turn 1,000 as at turn 10?

One session on a fresh stack (``bench/e2e_stack.py``), N turns back to back through the
gateway (``bench/e2e_client.Conversation``: its SSE stream open throughout, each message
posted once the last turn ended), each asking for a 5-word answer at the dev model's
fastest pace. Measured at turns 1, 10, 100, 500 and 1,000 (those up to N, and N):

* time to first token (POST until the first ``text_delta`` over SSE), the median over a
  window of the last 10 turns up to that turn (turn 1 alone), and what it adds to a
  direct request to the dev model carrying the same history (5 of them at that point,
  median);
* the agent's, gateway's and nats-server's CPU per turn over the same window, from
  ``/proc/<pid>/task/*/schedstat`` read before and after every turn (nanoseconds), the
  mean over the window;
* ``GET /v1/sessions/{id}`` after that turn: median of 5, and the size of its answer.

The session is run 3 times on the stack, one after the other, and each figure is the
median of the three sessions' (a window of nine short turns at turn 10 is a few ms of
CPU, and one collection or a busy moment of the machine moved it by a third). Then turn
N against turn 10, for the agent's CPU per turn and the added time to first token (the
issue's target: at most 1.2 at 1,000 turns). ``python -m bench.longsession [--turns N]
[--sessions K]`` runs it alone (``--turns 30 --sessions 1`` is a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

import httpx

from bench.common import median, progress
from bench.e2e_client import Conversation, TurnError, ticking
from bench.e2e_stack import Stack, running_stack, wait_quiet
from bench.meter import process_cpu
from bench.stream_client import StreamClient, openai_body, openai_wire

TURNS = 1000
QUICK_TURNS = 30
POINTS = (1, 10, 100, 500, 1000)
WINDOW = 10
SAMPLES = 5
WORDS = 5
TEXT = f"A short one. [[words:{WORDS}]] [[pace:ttft=0,tps=0]]"
#: what the dev model answers to TEXT (its words cycle through lorem ipsum)
ANSWER = "lorem ipsum dolor sit amet"
MEASURED = ("agent", "gateway", "nats-server")
TARGET_RATIO = 1.2
SESSIONS = 3


@dataclass
class Turns:
    """Per turn: TTFT, and CPU seconds per process spent on it (GETs left out)."""

    ttft_ms: list[float] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Point:
    turn: int
    window: range  # turn numbers, 1-based
    ttft_ms: float
    direct_ms: float
    cpu_ms: dict[str, float]
    get_ms: float
    get_kib: float

    @property
    def added_ms(self) -> float:
        return self.ttft_ms - self.direct_ms


@dataclass
class Result:
    turns: int
    sessions: int = 1
    done: int = 0  # turns done, all sessions together
    wall_s: float = 0.0
    #: per session, its points
    runs: list[list[Point]] = field(default_factory=list)
    error: str = ""

    @property
    def points(self) -> list[Point]:
        """Per point, the median of the sessions that reached it."""
        if not self.runs:
            return []
        return [_median_point([run[i] for run in self.runs if len(run) > i])
                for i in range(max(map(len, self.runs)))]  # fmt: skip


def _median_point(same: list[Point]) -> Point:
    """The median of each figure of one point over sessions."""
    first = same[0]
    return Point(
        first.turn,
        first.window,
        median([p.ttft_ms for p in same]),
        median([p.direct_ms for p in same]),
        {name: median([p.cpu_ms[name] for p in same]) for name in first.cpu_ms},
        median([p.get_ms for p in same]),
        median([p.get_kib for p in same]),
    )


def points_for(turns: int) -> list[int]:
    return sorted({p for p in POINTS if p <= turns} | {turns})


def window_for(turn: int) -> range:
    """The turns a point's figures are averaged over: the last WINDOW up to it, leaving
    out turn 1 (a session's first turn does more) unless it is the point."""
    return range(1, 2) if turn == 1 else range(max(2, turn - WINDOW + 1), turn + 1)


def history(turn: int) -> list[dict[str, str]]:
    """What turn ``turn`` of the session asks the model: the earlier turns and this one."""
    pairs = [({"role": "user", "content": TEXT}, {"role": "assistant", "content": ANSWER})] * (
        turn - 1
    )
    return [m for pair in pairs for m in pair] + [{"role": "user", "content": TEXT}]


async def _direct_ms(client: StreamClient, turn: int) -> float:
    body = openai_body(history(turn))
    return median([(await client.send(body))[0] for _ in range(SAMPLES)])


async def _get_ms(http: httpx.AsyncClient, session: str) -> tuple[float, float]:
    times, size = [], 0
    for _ in range(SAMPLES):
        start = time.perf_counter()
        resp = await http.get(f"/v1/sessions/{session}")
        times.append((time.perf_counter() - start) * 1000)
        if resp.status_code != 200:
            raise TurnError(f"GET session: HTTP {resp.status_code} {resp.text[:200]!r}")
        size = len(resp.content)
    return median(times), size / 1024


def _point(turn: int, turns: Turns, direct_ms: float, get: tuple[float, float]) -> Point:
    window = window_for(turn)
    cpu = {
        name: sum(turns.cpu[k - 1][name] for k in window) / len(window) * 1000 for name in MEASURED
    }
    ttft = median([turns.ttft_ms[k - 1] for k in window])
    return Point(turn, window, ttft, direct_ms, cpu, *get)


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after}


async def _session(stack: Stack, turns: int, result: Result) -> None:
    pids = {name: stack.pids[name] for name in MEASURED}
    marks = set(points_for(turns))
    log = Turns()
    points = result.runs[-1]
    direct = StreamClient(stack.devmodel_url, openai_wire())
    await _warm_up(stack, direct)
    conv = Conversation(stack.gateway_url, stack.tokens[0])
    headers = {"Authorization": f"Bearer {stack.tokens[0]}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=60) as http:
        await conv.open()
        try:
            start = time.perf_counter()
            name = f"long session {len(result.runs)} of {result.sessions}"
            async with ticking(name, lambda: f"{len(log.ttft_ms)} of {turns} turns"):
                for k in range(1, turns + 1):
                    before = process_cpu(pids)
                    ttft, _ = await conv.turn(TEXT)
                    log.ttft_ms.append(ttft)
                    log.cpu.append(_spent(before, process_cpu(pids)))
                    result.done += 1
                    if k in marks:
                        get = await _get_ms(http, conv.session)
                        point = _point(k, log, await _direct_ms(direct, k), get)
                        points.append(point)
                        progress(f"{name}, turn {k}: {_summary(point)}")
            result.wall_s += time.perf_counter() - start
        finally:
            conv.close()


async def _warm_up(stack: Stack, direct: StreamClient) -> None:
    """A few turns in another session and direct requests first (not counted): imports,
    connections, the processes' first-use paths, so turn 1 measures a session's first
    turn rather than the stack's."""
    conv = Conversation(stack.gateway_url, stack.tokens[0])
    try:
        await conv.open()
        for _ in range(3):
            await conv.turn(TEXT)
    finally:
        conv.close()
    await _direct_ms(direct, 1)


def _summary(p: Point) -> str:
    return (
        f"TTFT {p.ttft_ms:.1f} ms ({p.added_ms:+.1f}), agent {p.cpu_ms['agent']:.1f} ms/turn, "
        f"GET {p.get_ms:.1f} ms"
    )


async def measure(turns: int, *, sessions: int = 1, quiet_wait_s: float = 300) -> Result:
    busy = await wait_quiet(max_wait_s=quiet_wait_s)
    progress(f"long session, {sessions} x {turns} turns: starting the stack ({busy:.2f} CPUs busy)")
    result = Result(turns, sessions)
    async with running_stack(1, sync_always=False) as stack:
        for _ in range(sessions):
            result.runs.append([])
            try:
                await _session(stack, turns, result)
            except (TurnError, OSError, httpx.HTTPError, TimeoutError) as exc:
                result.error = f"{type(exc).__name__}: {exc}"[:200]
                progress(f"long session stopped after {result.done} turns: {result.error}")
                break
    return result


# --------------------------------------------------------------------------- report


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _table(result: Result) -> list[str]:
    rows = [
        "| turn | window (turns) | TTFT (ms) | direct, same history (ms) | added TTFT (ms) | "
        "agent CPU (ms/turn) | gateway CPU (ms/turn) | nats-server CPU (ms/turn) | "
        "`GET /v1/sessions/{id}` (ms) | its size (KiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in result.points:
        w = f"{p.window.start}-{p.window.stop - 1}" if len(p.window) > 1 else f"{p.window.start}"
        rows.append(
            f"| {p.turn:,} | {w} | {p.ttft_ms:.1f} | {p.direct_ms:.1f} | {p.added_ms:+.1f} | "
            f"{p.cpu_ms['agent']:.1f} | {p.cpu_ms['gateway']:.1f} | "
            f"{p.cpu_ms['nats-server']:.1f} | {p.get_ms:.1f} | {p.get_kib:.1f} |"
        )
    return rows


def _target(result: Result) -> list[str]:
    at = {p.turn: p for p in result.points}
    last = result.points[-1] if result.points else None
    if 10 not in at or last is None or last.turn <= 10:
        return []
    cpu = _ratio(last.cpu_ms["agent"], at[10].cpu_ms["agent"])
    added = _ratio(last.added_ms, at[10].added_ms)
    full = last.turn >= TURNS
    verdict = (
        (" met" if max(cpu, added) <= TARGET_RATIO else " NOT met")
        if full
        else f" (the target is at {TURNS:,} turns)"
    )
    return [
        f"Turn {last.turn:,} against turn 10: agent CPU per turn {cpu:.2f}x, added TTFT "
        f"{added:.2f}x (target at most {TARGET_RATIO}x both){verdict}."
    ]


def report(result: Result) -> list[str]:
    rate = result.done / result.wall_s if result.wall_s else float("nan")
    lines = [
        f"One session, {result.turns:,} turns back to back through the gateway, each a "
        f"{WORDS}-word answer at the dev model's fastest pace (`[[pace:ttft=0,tps=0]]`), "
        f"{result.sessions} such sessions one after the other; {result.done:,} turns in "
        f"{result.wall_s:.0f} s ({rate:.1f} turns/s). Figures at a turn are over a window "
        f"of up to {WINDOW} turns ending there (medians for times, means for CPU), then the "
        f"median of the sessions; direct: the same history sent straight to the dev model.",
        "",
        *_table(result),
        "",
        *_target(result),
    ]
    if result.error:
        lines.append(f"Stopped after {result.done:,} turns: `{result.error}`.")
    return lines


async def run(
    *, quick: bool = False, turns: int | None = None, sessions: int | None = None
) -> list[str]:
    turns = turns or (QUICK_TURNS if quick else TURNS)
    sessions = sessions or (1 if quick else SESSIONS)
    return report(await measure(turns, sessions=sessions, quiet_wait_s=20 if quick else 300))


if __name__ == "__main__":  # python -m bench.longsession [--turns N]: this section alone
    parser = argparse.ArgumentParser(prog="python -m bench.longsession")
    parser.add_argument("--turns", type=int, default=TURNS, help="turns in each session")
    parser.add_argument("--sessions", type=int, default=SESSIONS, help="sessions, one by one")
    args = parser.parse_args()
    print("\n".join(asyncio.run(run(turns=args.turns, sessions=args.sessions))))
