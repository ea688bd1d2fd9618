"""Threadline against its peers, in one run, on one dev model.

Per level (N conversations) one fresh Threadline stack (``bench/e2e_stack.py``: nats-server,
the dev model at 50 tokens/s, one agent, one gateway) and, beside it, the peers pointed at
the same dev model (``bench/peers/servers.py``). Then phases of the same length, one
after the other, each N closed-loop workers asking for a 50-word answer
(``bench/e2e_client.drive``):

1. **direct SDK**: ``openai`` SDK streams straight from the dev model (the baseline, as in
   the end-to-end section);
2. **Threadline**: a conversation through the gateway (session, SSE stream, message), as in
   the end-to-end section;
3. **each peer**: one POST streaming the answer back (``bench/stream_client.py``): the
   LiteLLM proxy's chat completions, the AI SDK server's chat route.

Per phase: completed turns/s against the direct SDK's, time to first token and what it
adds to the direct SDK's, and CPU per completed turn on the serving path (Threadline:
nats-server + agent + gateway; LiteLLM: its process tree; AI SDK: node + redis-server),
the dev model's apart. ``python -m bench.peers.section [--quick]`` runs it alone.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import median, percentile, progress
from bench.e2e_client import WORDS, DirectClient, GatewayClient, Tally, TurnFn, drive, ticking
from bench.e2e_stack import DEV_TOKENS_PER_S, DEV_TTFT_MS, running_stack, wait_quiet
from bench.meter import Meter, Spent
from bench.peers.servers import AISDK, Peers, resume_check, running_peers
from bench.stream_client import StreamClient

FULL_LEVELS = [10, 50]
QUICK_LEVELS = [5]
DIRECT = "direct SDK"
THREADLINE = "Threadline"
THREADLINE_PATH = ["nats-server", "agent", "gateway"]
#: the direct SDK's client (this process) is CPU-bound beyond this share of one core
CLIENT_BOUND = 0.9
#: the issue's targets, checked at TARGET_LEVEL conversations
TARGET_LEVEL = 50
CPU_VS_AISDK = 0.8
RATE_VS_DIRECT = 0.95
ADDED_P99_MS = 50.0


@dataclass(frozen=True)
class Run:
    """One system's phase at one level."""

    system: str
    tally: Tally
    wall: float
    spent: Spent
    serving: list[str]

    @property
    def rate(self) -> float:
        return self.tally.done / self.wall if self.wall else 0.0

    def ttft(self, q: float) -> float:
        return median(self.tally.ttft_ms) if q == 50 else percentile(self.tally.ttft_ms, q)

    def ms_per_turn(self, *names: str) -> float:
        return self.spent.per_turn_ms(names, self.tally.done)

    @property
    def serving_ms(self) -> float:
        return self.ms_per_turn(*self.serving)

    @property
    def client_bound(self) -> bool:
        return self.spent.cpu["bench"] / self.spent.wall >= CLIENT_BOUND


@dataclass
class Level:
    conversations: int
    duration_s: float
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def run(self, system: str) -> Run | None:
        return next((r for r in self.runs if r.system == system), None)


async def _phase(
    label: str, n: int, duration_s: float, turn: TurnFn, pids: dict[str, int]
) -> tuple[Tally, float, Spent]:
    tally, meter = Tally(), Meter(pids)
    async with ticking(label, tally.line):
        _, wall = await drive(n, duration_s, turn, tally)
    return tally, wall, meter.done()


def _notes(peers: Peers) -> list[str]:
    return [f"{name}: not measured ({why})." for name, why in peers.missing.items()]


async def run_level(n: int, duration_s: float, *, quiet_wait_s: float = 300) -> Level:
    level = Level(n, duration_s)
    busy = await wait_quiet(max_wait_s=quiet_wait_s)
    progress(f"peers, {n} conversations: starting Threadline's stack and the peers ({busy:.2f})")
    with tempfile.TemporaryDirectory(prefix="tl-bench-peers-") as tmp:
        async with (
            running_stack(n, sync_always=False) as stack,
            running_peers(stack.devmodel_url, Path(tmp)) as peers,
        ):
            level.notes += _notes(peers)
            for peer in peers.running:
                if peer.name == AISDK:
                    level.notes.append(f"{AISDK}: {await resume_check(peer)}.")
            pids = {**stack.pids, **{k: v for p in peers.running for k, v in p.pids.items()}}
            direct = DirectClient(stack.devmodel_url)
            try:
                gateway = GatewayClient(stack.gateway_url, stack.token_for, Tally())
                systems: list[tuple[str, TurnFn, list[str]]] = [
                    (DIRECT, direct.turn, []),
                    (THREADLINE, gateway.turn, THREADLINE_PATH),
                    *[
                        (p.name, StreamClient(p.url, p.wire).turn, list(p.pids))
                        for p in peers.running
                    ],
                ]
                for name, turn, _ in systems:
                    progress(f"peers, {n} conversations: warming up {name} (10 turns, not counted)")
                    await drive(10, 0.0, turn)
                for name, turn, serving in systems:
                    label = f"peers, {n} conversations: {name}"
                    tally, wall, spent = await _phase(label, n, duration_s, turn, pids)
                    level.runs.append(Run(name, tally, wall, spent, serving))
            finally:
                await direct.close()
    return level


# --------------------------------------------------------------------------- report


def _pair(a: float, b: float, fmt: str = ".1f") -> str:
    return f"{a:{fmt}} / {b:{fmt}}"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _breakdown(run: Run) -> str:
    return ", ".join(f"{name} {run.ms_per_turn(name):.0f}" for name in run.serving) or "-"


def _row(level: Level, run: Run, direct: Run) -> str:
    is_direct = run is direct
    added = (
        "-" if is_direct
        else _pair(run.ttft(50) - direct.ttft(50), run.ttft(99) - direct.ttft(99), "+.1f")
    )  # fmt: skip
    serving = "-" if is_direct else f"{run.serving_ms:.0f} ({_breakdown(run)})"
    mark = " †" if is_direct and run.client_bound else ""
    return (
        f"| {level.conversations:,} | {run.system} | {run.tally.done:,} | {run.rate:.1f} | "
        f"{_ratio(run.rate, direct.rate):.2f} | {run.tally.errors.total()} | "
        f"{_pair(run.ttft(50), run.ttft(99))}{mark} | {added} | {serving} | "
        f"{run.ms_per_turn('devmodel'):.0f} | {run.ms_per_turn('bench'):.0f} |"
    )


def _table(levels: list[Level]) -> list[str]:
    rows = [
        "| conversations | system | turns | turns/s | vs direct SDK | errors | TTFT p50 / p99 "
        "(ms) | added p50 / p99 (ms) | serving path CPU (ms/turn; per process) | dev model "
        "CPU (ms/turn) | clients CPU (ms/turn) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for level in levels:
        direct = level.run(DIRECT)
        assert direct is not None
        rows += [_row(level, run, direct) for run in level.runs]
    return rows


def _phases(levels: list[Level]) -> list[str]:
    rows = [
        "| conversations | system | wall (s) | whole machine busy (CPU s) | of which elsewhere "
        "| speed check (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for level in levels:
        for run in level.runs:
            s = run.spent
            rows.append(
                f"| {level.conversations:,} | {run.system} | {s.wall:.1f} | {s.machine:.1f} | "
                f"{s.elsewhere_cpus * s.wall:.1f} | {s.speed_ms:.0f} |"
            )
    return rows


def _verdict(target: bool, met: bool) -> str:
    return (" met" if met else " NOT met") if target else ""


def _targets(level: Level) -> list[str]:
    """The issue's three closed-loop targets, as measured at this level."""
    direct, ours, aisdk = level.run(DIRECT), level.run(THREADLINE), level.run(AISDK)
    if direct is None or ours is None:
        return []
    at = level.conversations == TARGET_LEVEL
    n = f"{level.conversations:,} conversations"
    rate = _ratio(ours.rate, direct.rate)
    added = ours.ttft(99) - direct.ttft(99)
    lines = [
        f"{n}: Threadline's turns/s against the direct SDK's {rate:.2f} (target at least "
        f"{RATE_VS_DIRECT} at {TARGET_LEVEL}){_verdict(at, rate >= RATE_VS_DIRECT)}.",
        f"{n}: Threadline's added TTFT p99 {added:+.1f} ms (target at most {ADDED_P99_MS:.0f} "
        f"ms at {TARGET_LEVEL}){_verdict(at, added <= ADDED_P99_MS)}.",
    ]
    if aisdk is not None:
        cpu = _ratio(ours.serving_ms, aisdk.serving_ms)
        lines.append(
            f"{n}: Threadline's serving-path CPU per turn against the AI SDK stack's {cpu:.2f} "
            f"(target at most {CPU_VS_AISDK} at {TARGET_LEVEL}){_verdict(at, cpu <= CPU_VS_AISDK)}."
        )
    return lines


def report(levels: list[Level]) -> list[str]:
    duration = levels[0].duration_s if levels else 0.0
    lines = [
        f"Per level one Threadline stack and the peers beside it, all on one dev model "
        f"({WORDS}-word answers at {DEV_TOKENS_PER_S} tokens/s, TTFT {DEV_TTFT_MS} ms); one "
        f"phase of {duration:.0f} s per system at the same concurrency, closed loop. Added "
        "TTFT is against the direct SDK's of the same level.",
        "",
        *_table(levels),
        "",
        "Each phase's wall time, the whole machine's CPU over it and the speed check:",
        "",
        *_phases(levels),
        "",
    ]
    if any(run.client_bound for lv in levels for run in lv.runs if run.system == DIRECT):
        lines.append(
            f"† the direct SDK's client (this process) used {CLIENT_BOUND:.0%} or more of a "
            "core: that baseline is bound by its own client."
        )
    for level in levels:
        lines += _targets(level) + level.notes
        for run in level.runs:
            lines += [
                f"Errors at {level.conversations:,}, {run.system}: {count} x `{kind}`."
                for kind, count in run.tally.errors.most_common(3)
            ]
    return lines


async def run(*, quick: bool = False) -> list[str]:
    plan = QUICK_LEVELS if quick else FULL_LEVELS
    duration_s = 3.0 if quick else 15.0
    levels = []
    for index, n in enumerate(plan, 1):
        progress(f"peers, level {index}/{len(plan)}")
        levels.append(await run_level(n, duration_s, quiet_wait_s=20 if quick else 300))
    return report(levels)


if __name__ == "__main__":  # python -m bench.peers.section [--quick]: this section alone
    print("\n".join(asyncio.run(run(quick="--quick" in sys.argv))))
