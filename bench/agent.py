"""Agent benchmark: added time to first token, and 500 concurrent turns through one worker.

* added TTFT: a user message appended -> its first TextDelta seen by a follower, minus a
  direct ``openai`` SDK stream's time to first token from the same dev model, same run;
* load: N concurrent turns through ONE agent process (``threadline agent``, a
  subprocess) against the dev model (its own subprocess) at 50 tokens/s: completed,
  errors, wall time, events/s, and the agent process's CPU time and peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from openai import AsyncOpenAI

from bench.common import median, percentile, progress
from threadline.base.config import StreamSettings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS, SessionStarted, UserMessage
from threadline.events.store import NewEvent

WORDS = 50


async def _spawn(args: list[str], env: dict[str, str], ready: bytes) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while ready not in await proc.stdout.readline():
            pass
    return proc


@contextlib.asynccontextmanager
async def _stack(
    nats_url: str, ttft_ms: float
) -> AsyncIterator[tuple[str, JetStreamEventStore, int]]:
    tag = uuid.uuid4().hex[:8]
    settings = StreamSettings(name=f"A{tag}", prefix=f"a{tag}")
    store = await JetStreamEventStore.connect(nats_url, settings)
    port = 20000 + os.getpid() % 20000
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    dev = await _spawn(
        ["devmodel", "--port", str(port), "--ttft-ms", str(ttft_ms), "--tokens-per-second", "50"],
        base, b"Press Ctrl-C",
    )  # fmt: skip
    dev_url = f"http://127.0.0.1:{port}"
    env = base | {
        "THREADLINE_NATS_URL": nats_url,
        "THREADLINE_STREAM": settings.name,
        "THREADLINE_PREFIX": settings.prefix,
        "THREADLINE_DEVMODEL_URL": dev_url,
        "THREADLINE_DATA_DIR": f"/tmp/tl-bench-{tag}",
    }
    agent = await _spawn(["agent", "--concurrency", "1000"], env, b"agent worker consuming")
    try:
        yield dev_url, store, agent.pid
    finally:
        for proc in (agent, dev):
            proc.terminate()
            await proc.wait()
        await store.close()


async def _direct_ttft(dev_url: str, n: int) -> list[float]:
    client = AsyncOpenAI(base_url=f"{dev_url}/v1", api_key="x", max_retries=0)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        stream = await client.chat.completions.create(
            model="threadline-dev", messages=[{"role": "user", "content": "hi [[words:3]]"}],
            stream=True,
        )  # fmt: skip
        first = None
        async for chunk in stream:  # read to the end, as the agent does (connection reuse)
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = (time.perf_counter() - start) * 1000
        if first is not None:
            out.append(first)
    await client.close()
    return out


async def _threadline_ttft(store: JetStreamEventStore, n: int) -> list[float]:
    out = []
    for _ in range(n):
        session = f"ttft{uuid.uuid4().hex[:12]}"
        await store.append(session, NewEvent(event=SessionStarted(owner="b", provider="dev")))
        follower = store.follow(session)
        await anext(follower)  # the follower's consumer is up before the clock starts
        start = time.perf_counter()
        await store.append(session, NewEvent(event=UserMessage(text="hi [[words:3]]"), turn="t"))
        first = None
        async for rec in follower:
            if first is None and rec.kind == "text_delta":
                first = (time.perf_counter() - start) * 1000
            if rec.kind in TERMINAL_KINDS:
                break
        if first is not None:
            out.append(first)
        await follower.aclose()
    return out


def _proc_usage(pid: int) -> tuple[float, float]:
    """CPU seconds and peak RSS (MiB) of a process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


async def _load(store: JetStreamEventStore, pid: int, turns: int) -> dict[str, float]:
    after = await store.last_position()
    cpu0, _ = _proc_usage(pid)
    start = time.perf_counter()
    for i in range(turns):
        session = f"load{i}"
        await store.append(session, NewEvent(event=SessionStarted(owner="b", provider="dev")))
        await store.append(
            session, NewEvent(event=UserMessage(text=f"go [[words:{WORDS}]]"), turn=f"t{i}")
        )
    done = failed = events = 0
    async with asyncio.timeout(600):
        async for rec in store.follow_all(after=after):
            events += 1
            if rec.kind in TERMINAL_KINDS:
                done += 1
                failed += rec.kind != "turn_completed"
                if done == turns:
                    break
    wall = time.perf_counter() - start
    cpu1, peak = _proc_usage(pid)
    return {"wall": wall, "failed": failed, "events": events, "cpu": cpu1 - cpu0, "rss": peak}


async def run(nats_url: str, *, quick: bool = False) -> list[str]:
    n = 30 if quick else 100
    turns = 100 if quick else 500
    async with _stack(nats_url, ttft_ms=20) as (dev_url, store, pid):
        progress(f"time to first token, {n} turns each way")
        await _direct_ttft(dev_url, 3)  # warm up connections
        await _threadline_ttft(store, 3)
        direct = await _direct_ttft(dev_url, n)
        ours = await _threadline_ttft(store, n)
        progress(f"{turns} concurrent turns through one agent process")
        load = await _load(store, pid, turns)
    added50 = median(ours) - median(direct)
    added99 = percentile(ours, 99) - percentile(direct, 99)
    return [
        "| measure | direct SDK stream | through Threadline | added |",
        "| --- | --- | --- | --- |",
        f"| time to first token p50 (ms) | {median(direct):.1f} | {median(ours):.1f} "
        f"| {added50:+.1f} ms (target < 5) |",
        f"| time to first token p99 (ms) | {percentile(direct, 99):.1f} | "
        f"{percentile(ours, 99):.1f} | {added99:+.1f} ms (target < 20) |",
        "",
        f"{turns} concurrent turns ({WORDS} words each at 50 tokens/s) through one agent process:",
        "",
        "| completed | failed | wall (s) | events/s | agent CPU (s) | agent CPU share "
        "| agent peak RSS (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {turns - load['failed']:.0f} | {load['failed']:.0f} | {load['wall']:.1f} "
        f"| {load['events'] / load['wall']:,.0f} | {load['cpu']:.1f} "
        f"| {load['cpu'] / load['wall']:.0%} | {load['rss']:.0f} |",
    ]
