"""The processes of the end-to-end benchmark, each its own OS process as in production.

One stack per level: a fresh ``nats-server`` (optionally ``sync_interval: always``), the
dev model (``threadline devmodel``), one agent (``threadline agent``) and one gateway
(``threadline gateway``), all under a throwaway directory. Service processes run in their
own process groups and die with the benchmark (PDEATHSIG); leaving the stack stops them
(SIGTERM, then SIGKILL of the group) whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.common import progress
from threadline.services.runtime.natsserver import EmbeddedNats
from threadline.services.runtime.processes import ServiceProcess, free_ports

DEV_TTFT_MS = 20
DEV_TOKENS_PER_S = 50
#: conversations per owner: well under the gateway's default cap of 16 SSE streams per
#: owner, also while the streams of finished conversations are being released
PER_OWNER = 5
AGENT_CONCURRENCY = 1000
#: what every bench service gets on top of the (cleaned) environment
SERVICE_ENV = {
    "THREADLINE_LOG_LEVEL": "WARNING",
    # the per-owner command rate limit (5/s, burst 30) would throttle the benchmark itself
    "THREADLINE_RATE_PER_S": "0",
}


@dataclass(frozen=True)
class Stack:
    gateway_url: str
    devmodel_url: str
    tokens: list[str]
    pids: dict[str, int]  # process name -> pid: nats-server, devmodel, agent, gateway
    sync_always: bool
    #: nats-server's client URL and monitoring endpoint (/varz, /connz, /jsz)
    nats_url: str = ""
    monitor_url: str = ""

    def token_for(self, index: int) -> str:
        return self.tokens[(index // PER_OWNER) % len(self.tokens)]


def nats_config(monitor_port: int, *, sync_always: bool) -> str:
    """The server's config file: monitoring (to check the setting) and the sync policy."""
    text = f'http: "127.0.0.1:{monitor_port}"\n'
    if sync_always:
        text += "jetstream {\n  sync_interval: always\n}\n"
    return text


def sync_always_reported(monitor_port: int) -> bool:
    """What the running server says about ``sync_interval: always`` (``/varz``)."""
    url = f"http://127.0.0.1:{monitor_port}/varz"
    with urllib.request.urlopen(url, timeout=5) as resp:
        varz = json.load(resp)
    return bool(varz.get("jetstream", {}).get("config", {}).get("sync_always"))


def clean_env() -> dict[str, str]:
    """This environment without Threadline settings or provider keys."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("THREADLINE_") and not k.endswith("_API_KEY")
    }


def _service(
    name: str, module: str, args: list[str], env: Mapping[str, str], root: Path, ready: str
) -> ServiceProcess:
    env = {**env, "THREADLINE_DATA_DIR": str(root / name)}
    return ServiceProcess(name, module, args, env, root / f"{name}.log", ready)


async def _start(proc: ServiceProcess, stack: contextlib.AsyncExitStack) -> str:
    stack.push_async_callback(proc.stop)
    try:
        return await proc.start()
    except Exception:
        with contextlib.suppress(OSError):
            tail = proc.log_path.read_text(errors="replace").splitlines()[-15:]
            print("\n".join(f"    {proc.name}: {line}" for line in tail), file=sys.stderr)
        raise


def url_in(line: str) -> str:
    found = re.search(r"(http://[\d.]+:\d+)", line)
    if found is None:
        raise RuntimeError(f"no URL in {line!r}")
    return found[1]


async def _services(
    stack: contextlib.AsyncExitStack, root: Path, nats_url: str, owners: int
) -> tuple[str, str, list[str], dict[str, int]]:
    env = clean_env() | SERVICE_ENV | {"THREADLINE_NATS_URL": nats_url}
    pace = ["--ttft-ms", str(DEV_TTFT_MS), "--tokens-per-second", str(DEV_TOKENS_PER_S)]
    dev = _service(
        "devmodel", "threadline.services.devmodel", ["--port", "0", *pace], env, root,
        r"OpenAI base URL",
    )  # fmt: skip
    dev_url = url_in(await _start(dev, stack))
    env["THREADLINE_DEVMODEL_URL"] = dev_url
    agent = _service(
        "agent", "threadline.services.cli",
        ["agent", "--concurrency", str(AGENT_CONCURRENCY)], env, root, r"agent worker consuming",
    )  # fmt: skip
    tokens = [f"bench-{i}-{os.urandom(6).hex()}" for i in range(owners)]
    gw_env = env | {"THREADLINE_TOKENS": ",".join(f"{t}:owner{i}" for i, t in enumerate(tokens))}
    gateway = _service(
        "gateway", "threadline.services.cli",
        ["gateway", "--port", "0", "--history", "log"], gw_env, root, r"gateway on http://",
    )  # fmt: skip
    await _start(agent, stack)
    gw_url = url_in(await _start(gateway, stack))
    pids = {p.name: p.pid for p in (dev, agent, gateway) if p.pid is not None}
    return gw_url, dev_url, tokens, pids


@contextlib.asynccontextmanager
async def running_stack(conversations: int, *, sync_always: bool) -> AsyncIterator[Stack]:
    owners = max(1, -(-conversations // PER_OWNER))
    with tempfile.TemporaryDirectory(prefix="tl-bench-e2e-") as tmp:
        root = Path(tmp)
        (monitor,) = free_ports(1)
        config = nats_config(monitor, sync_always=sync_always)
        async with (
            EmbeddedNats(root / "nats", config_text=config) as nats,
            contextlib.AsyncExitStack() as stack,
        ):
            if sync_always_reported(monitor) != sync_always:
                raise RuntimeError("nats-server does not run with the sync policy asked for")
            assert nats.process is not None
            gw_url, dev_url, tokens, pids = await _services(stack, root, nats.url, owners)
            pids = {"nats-server": nats.process.pid, **pids}
            progress(f"stack up: nats-server {nats.url}, dev model {dev_url}, gateway {gw_url}")
            monitor_url = f"http://127.0.0.1:{monitor}"
            yield Stack(gw_url, dev_url, tokens, pids, sync_always, nats.url, monitor_url)


# --------------------------------------------------------------------------- /proc


def proc_usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS (VmHWM, MiB) of a process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, every process), /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def wait_quiet(
    busy_below: float = 0.3, window_s: float = 2.0, max_wait_s: float = 300
) -> float:
    """Wait (at most ``max_wait_s``) until the machine's other work uses less than
    ``busy_below`` of a CPU over ``window_s``: on a shared machine another job's load ends
    up in every figure. Returns the CPUs busy in the last window."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while True:
        before = machine_busy()
        await asyncio.sleep(window_s)
        busy = (machine_busy() - before) / window_s
        if busy < busy_below or loop.time() >= deadline:
            return busy
        progress(f"waiting for a quiet machine: {busy:.2f} CPUs busy elsewhere")


def speed_check_ms(rounds: int = 5) -> float:
    """Median time of a fixed pure-Python workload: how fast the CPUs run right now. On a
    shared host the same work takes up to twice as long from one minute to the next,
    which no counter inside the machine shows; the report gives this beside the figures."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        sum(i * i for i in range(300_000))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@dataclass(frozen=True)
class Usage:
    """CPU seconds per process over a phase, peak RSS at its end, the machine's total,
    and the speed check taken just before the phase."""

    wall: float
    cpu: dict[str, float]
    rss: dict[str, float]
    machine: float
    speed_ms: float


class UsageMeter:
    """The speed check, then a snapshot just before a phase; :meth:`done` gives the deltas.
    ``bench`` is this process (the clients)."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.speed_ms = speed_check_ms()
        self.pids = {**pids, "bench": os.getpid()}
        self.wall_start = time.perf_counter()
        self.start = {name: proc_usage(pid)[0] for name, pid in self.pids.items()}
        self.machine_start = machine_busy()

    def done(self) -> Usage:
        now = {name: proc_usage(pid) for name, pid in self.pids.items()}
        return Usage(
            wall=time.perf_counter() - self.wall_start,
            cpu={name: now[name][0] - self.start[name] for name in now},
            rss={name: now[name][1] for name in now},
            machine=machine_busy() - self.machine_start,
            speed_ms=self.speed_ms,
        )
