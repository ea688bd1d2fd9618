"""CPU time of the processes of a benchmark phase, each counted with everything it
started (a LiteLLM worker, an MCP server), from ``/proc``; the machine's total beside it,
so what other processes used shows."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.e2e_stack import machine_busy, proc_usage, speed_check_ms


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, CPU ticks of the process and of the children it reaped), None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def tree_cpu(roots: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) of each root process and every live descendant of it,
    plus what the children they reaped used (one pass over ``/proc``)."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p)))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    totals = {}
    for name, root in roots.items():
        total, todo = 0, [root]
        while todo:
            pid = todo.pop()
            if pid in stats:
                total += stats[pid][1]
                todo += children.get(pid, [])
        totals[name] = total / os.sysconf("SC_CLK_TCK")
    return totals


def cpu_now(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process (with what it started) and of this process
    alone, ``bench`` (the clients)."""
    return tree_cpu(pids) | {"bench": proc_usage(os.getpid())[0]}


@dataclass(frozen=True)
class Spent:
    """What a phase cost: wall seconds, CPU seconds per process, the whole machine's busy
    CPU seconds, and the speed check taken just before."""

    wall: float
    cpu: dict[str, float]
    machine: float
    speed_ms: float

    @property
    def elsewhere_cpus(self) -> float:
        """CPUs used on average by processes other than the benchmark's."""
        outside = max(0.0, self.machine - sum(self.cpu.values()))
        return outside / self.wall if self.wall else 0.0

    def per_turn_ms(self, names: Iterable[str], turns: int) -> float:
        return sum(self.cpu.get(n, 0.0) for n in names) / max(1, turns) * 1000


class Meter:
    """The speed check, then a snapshot; :meth:`done` gives what was spent since."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.speed_ms = speed_check_ms()
        self.pids = dict(pids)
        self.wall = time.perf_counter()
        self.start = cpu_now(self.pids)
        self.machine = machine_busy()

    def done(self) -> Spent:
        now = cpu_now(self.pids)
        return Spent(
            wall=time.perf_counter() - self.wall,
            cpu={name: now[name] - self.start[name] for name in now},
            machine=machine_busy() - self.machine,
            speed_ms=self.speed_ms,
        )


def _run_ns(pid: int) -> int:
    """Nanoseconds on a CPU so far of every live thread of ``pid`` (``schedstat``: exact,
    where ``stat`` counts 10 ms ticks), 0 if it is gone."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total


def process_cpu(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process alone, to the nanosecond (for sampling every
    turn: a turn costs a few ms, less than one ``stat`` tick)."""
    return {name: _run_ns(pid) / 1e9 for name, pid in pids.items()}
