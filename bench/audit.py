"""What the audit features cost a turn: record signatures, per-owner encryption and
checkpoints, on against off, in the same run.

Each configuration is a fresh ``threadline up`` (its own data dir, keys and embedded
nats-server; one agent worker process per core) with the dev model outside it (its own
process, the same for both, so only what Threadline does is counted). N conversations in
a closed loop (``bench/e2e_client.py``: session created, SSE stream open, one 50-word
turn at 50 tokens/s) for the same duration; CPU seconds of ``up`` and everything it
started (gateway, projector, checkpointer, agent workers, nats-server), per completed
turn. The two configurations alternate (off, on, off, on, ...) so a drift of the machine
shows in both; the figure is the median per configuration. The ``on`` configuration takes
a checkpoint every few seconds, far more often than the default (300 s), so its cost
shows. The issue's target: at most 1.10x the CPU per turn of ``off``.

``python -m bench.audit [--quick]`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.common import median, percentile, progress
from bench.e2e_client import GatewayClient, Tally, drive, ticking
from bench.e2e_stack import (
    DEV_TOKENS_PER_S,
    DEV_TTFT_MS,
    PER_OWNER,
    SERVICE_ENV,
    clean_env,
    url_in,
    wait_quiet,
)
from bench.meter import process_cpu, tree_cpu
from threadline.services.runtime.processes import ServiceProcess

CONVERSATIONS = 20
DURATION_S = 30.0
QUICK_DURATION_S = 8.0
ROUNDS = 3
QUICK_ROUNDS = 1
CHECKPOINT_EVERY_S = 5
TARGET = 1.10
#: the settings of each configuration, on top of the bench environment
CONFIGS: dict[str, dict[str, str]] = {
    "off": {
        "THREADLINE_SIGNING": "off",
        "THREADLINE_SEAL_CONTENT": "false",
        "THREADLINE_CHECKPOINT_INTERVAL_S": "0",
    },
    "on": {
        "THREADLINE_SIGNING": "on",
        "THREADLINE_SEAL_CONTENT": "true",
        "THREADLINE_CHECKPOINT_INTERVAL_S": str(CHECKPOINT_EVERY_S),
    },
}


@dataclass(frozen=True)
class Sample:
    config: str
    turns: int
    errors: int
    cpu_s: float  # up and everything it started
    ttft_p50_ms: float
    #: CPU seconds of each part: up's own process (gateway, projector, checkpointer),
    #: the agent workers, nats-server
    parts: dict[str, float]

    @property
    def ms_per_turn(self) -> float:
        return self.cpu_s / max(1, self.turns) * 1000


@contextlib.asynccontextmanager
async def _devmodel(root: Path) -> AsyncIterator[str]:
    pace = ["--ttft-ms", str(DEV_TTFT_MS), "--tokens-per-second", str(DEV_TOKENS_PER_S)]
    env = clean_env() | SERVICE_ENV | {"THREADLINE_DATA_DIR": str(root / "devmodel")}
    dev = ServiceProcess(
        "devmodel", "threadline.services.devmodel", ["--port", "0", *pace], env,
        root / "devmodel.log", r"OpenAI base URL",
    )  # fmt: skip
    try:
        line = await dev.start()
        yield url_in(line)
    finally:
        await dev.stop()


@contextlib.asynccontextmanager
async def _up(
    root: Path, config: str, dev_url: str, tokens: list[str]
) -> AsyncIterator[tuple[str, int]]:
    data = root / config
    env = (
        clean_env()
        | SERVICE_ENV
        | CONFIGS[config]
        | {
            "THREADLINE_DATA_DIR": str(data),
            "THREADLINE_TOKENS": ",".join(f"{t}:owner{i}" for i, t in enumerate(tokens)),
            # the dev model runs outside (a provider URL set: up starts none of its own)
            "THREADLINE_DEVMODEL_URL": dev_url,
            "OLLAMA_BASE_URL": dev_url,
        }
    )
    up = ServiceProcess(
        f"up-{config}", "threadline.services.cli", ["up", "--port", "0"], env,
        root / f"up-{config}.log", r"gateway\s+http://",
    )  # fmt: skip
    try:
        line = await up.start()
        assert up.pid is not None
        yield url_in(line), up.pid

    finally:
        await up.stop()


def _parts(data: Path, up_pid: int) -> dict[str, int]:
    """The processes of a running ``up``, from the runtime file it wrote."""
    runtime = json.loads((data / "runtime.json").read_text())
    agents = [int(p) for p in str(runtime.get("agent_pids", "")).split(",") if p]
    return {"up": up_pid, "nats-server": int(runtime["nats_pid"])} | {
        f"agent{i}": pid for i, pid in enumerate(agents)
    }


async def _sample(root: Path, config: str, dev_url: str, duration_s: float, quick: bool) -> Sample:
    # a few owners: each keeps well under the gateway's cap of SSE streams per owner
    tokens = [f"bench-{i}-{os.urandom(6).hex()}" for i in range(-(-CONVERSATIONS // PER_OWNER))]
    async with _up(root, config, dev_url, tokens) as (gateway_url, pid):
        await wait_quiet(max_wait_s=20 if quick else 300)
        tally = Tally()
        client = GatewayClient(gateway_url, lambda i: tokens[i // PER_OWNER], tally)
        pids = _parts(root / config, pid)
        before, alone = tree_cpu({"up": pid})["up"], process_cpu(pids)
        async with ticking(f"audit {config}", tally.line):
            await drive(CONVERSATIONS, duration_s, client.turn, tally)
        cpu = tree_cpu({"up": pid})["up"] - before
        after = process_cpu(pids)
    parts: dict[str, float] = {}
    for name in pids:
        part = "agents" if name.startswith("agent") else name
        parts[part] = parts.get(part, 0.0) + after[name] - alone[name]
    return Sample(
        config, tally.done, tally.errors.total(), cpu, percentile(tally.ttft_ms, 50), parts
    )


async def measure(*, quick: bool = False) -> list[Sample]:
    duration = QUICK_DURATION_S if quick else DURATION_S
    rounds = QUICK_ROUNDS if quick else ROUNDS
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="tl-bench-audit-") as tmp:
        root = Path(tmp)
        async with _devmodel(root) as dev_url:
            for k in range(rounds):
                for config in CONFIGS:
                    progress(f"audit round {k + 1}/{rounds}: {config}")
                    samples.append(await _sample(root / f"r{k}", config, dev_url, duration, quick))
    return samples


def report(samples: list[Sample]) -> list[str]:
    by: Mapping[str, list[Sample]] = {c: [s for s in samples if s.config == c] for c in CONFIGS}
    per_turn = {c: median([s.ms_per_turn for s in ss]) for c, ss in by.items()}
    ratio = per_turn["on"] / per_turn["off"]
    lines = [
        f"{CONVERSATIONS} conversations, 50-word turns at {DEV_TOKENS_PER_S} tokens/s, "
        f"{len(by['off'])} round(s) of each configuration, alternating; CPU of `threadline up` "
        "and everything it started (gateway, projector, checkpointer, agent workers, "
        "nats-server), the dev model outside it.",
        "",
        "| configuration | turns | errors | CPU per turn (ms, median) | of which up's process / "
        "agents / nats-server | TTFT p50 (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for config, ss in by.items():
        lines.append(
            f"| {config} | {sum(s.turns for s in ss)} | {sum(s.errors for s in ss)} | "
            f"{per_turn[config]:.1f} ({', '.join(f'{s.ms_per_turn:.1f}' for s in ss)}) | "
            f"{_split(ss)} | "
            f"{median([s.ttft_p50_ms for s in ss]):.0f} |"
        )
    rounds = [
        f"{on.ms_per_turn / off.ms_per_turn:.2f}"
        for off, on in zip(by["off"], by["on"], strict=True)
    ]
    verdict = "met" if ratio <= TARGET else "not met"
    lines += [
        "",
        f"Signatures, encryption and checkpoints (every {CHECKPOINT_EVERY_S} s) on: "
        f"**{ratio:.2f}x** the CPU per turn of off (target at most {TARGET:.2f}x: {verdict}); "
        f"round by round {', '.join(rounds)}x.",
        "",
        "Settings of each: " + json.dumps(CONFIGS),
    ]
    return lines


def _split(samples: list[Sample]) -> str:
    def part(name: str) -> float:
        return median([s.parts.get(name, 0.0) / max(1, s.turns) * 1000 for s in samples])

    return " / ".join(f"{part(n):.1f}" for n in ("up", "agents", "nats-server"))


async def run(*, quick: bool = False) -> list[str]:
    return report(await measure(quick=quick))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print("\n".join(asyncio.run(run(quick=args.quick))))


if __name__ == "__main__":
    main()
