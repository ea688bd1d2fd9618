"""Model-client benchmark: our streaming path against the plain SDK path, same run.

Client CPU (this process's CPU time; the dev model runs in its own process, unthrottled)
per request, both wire APIs:

* a streamed 50-word answer: ours is the adapter (msgspec-encoded body through the SDK's
  low-level ``post``, SSE parsed by msgspec into parts); the plain SDK path is
  ``create(stream=True)`` iterated to the end (pydantic models per chunk);
* a request with 600 history messages and a one-word answer: ours maps the
  ``ModelRequest`` and encodes it; the plain SDK path gets the message dicts already
  built and pays only its own request transformation and encoding.

The paths alternate in rounds, so a busy machine slows both alike. Also runnable alone:
``python -m bench.client [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from bench.common import progress
from threadline.base.redact import Redactor
from threadline.events.conversation import AssistantTurn, Message, UserTurn
from threadline.services.agent.providers import ModelAdapter, ModelRequest, adapter_for
from threadline.services.agent.providers import load_providers as providers_for
from threadline.services.agent.providers.anthropic_map import to_anthropic
from threadline.services.agent.providers.openai_map import to_openai
from threadline.services.agent.providers.sdk_adapter import client_options
from threadline.services.runtime.processes import free_ports

WORDS = 50
HISTORY = 600
Run = Callable[[], Awaitable[None]]


@contextlib.asynccontextmanager
async def _devmodel() -> AsyncIterator[str]:
    port = free_ports(1)[0]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", "devmodel", "--port", str(port),
        "--ttft-ms", "0", "--tokens-per-second", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            while b"Press Ctrl-C" not in await proc.stdout.readline():
                pass
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


def _history(n: int) -> tuple[Message, ...]:
    said = " ".join(["word"] * 20)
    turns: list[Message] = []
    for i in range(n // 2):
        turns += [UserTurn(text=f"question {i}: {said}"), AssistantTurn(text=f"answer {i}: {said}")]
    return (*turns[: n - 1], UserTurn(text="last [[words:1]]"))


def _ours(adapter: ModelAdapter, request: ModelRequest) -> Run:
    async def run() -> None:
        async for _ in adapter.stream(request):
            pass

    return run


def _sdk_openai(client: AsyncOpenAI, adapter: ModelAdapter, request: ModelRequest) -> Run:
    w = to_openai(request, adapter.settings)  # built once: only the SDK's own work is timed

    async def run() -> None:
        stream = await client.chat.completions.create(
            model=w.model, messages=w.messages, stream=True,
            stream_options={"include_usage": True}, max_tokens=w.max_tokens,
        )  # fmt: skip
        async for chunk in stream:
            if chunk.choices:
                _ = chunk.choices[0].delta.content

    return run


def _sdk_anthropic(client: AsyncAnthropic, adapter: ModelAdapter, request: ModelRequest) -> Run:
    w = to_anthropic(request, adapter.settings)

    async def run() -> None:
        stream = await client.messages.create(
            model=w.model, max_tokens=w.max_tokens, messages=w.messages, stream=True
        )
        async for event in stream:
            _ = event.type

    return run


async def _cpu_ms(runs: dict[str, Run], n: int, rounds: int = 5) -> dict[str, float]:
    """CPU ms per call of each run, alternating ``rounds`` blocks of ``n / rounds``."""
    spent = dict.fromkeys(runs, 0.0)
    for run in runs.values():  # warm up: connections, imports, caches
        for _ in range(3):
            await run()
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.process_time()
            for _ in range(n // rounds):
                await run()
            spent[name] += time.process_time() - start
    return {name: cpu * 1000 / (n // rounds * rounds) for name, cpu in spent.items()}


async def measure(quick: bool) -> dict[tuple[str, str], dict[str, float]]:
    """(wire, case) -> {"ours": ms, "sdk": ms}."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    async with _devmodel() as url:
        registry = providers_for({"THREADLINE_DEVMODEL_URL": url}, redactor=Redactor())
        answer = ModelRequest(messages=(UserTurn(text=f"go [[words:{WORDS}]]"),))
        history = ModelRequest(messages=_history(HISTORY))
        for wire, name in (("OpenAI", "dev"), ("Anthropic", "dev-anthropic")):
            adapter = adapter_for(registry.get(name), redactor=Redactor())
            options = client_options(adapter.settings, None)
            client: Any = (AsyncOpenAI if wire == "OpenAI" else AsyncAnthropic)(**options)
            sdk = _sdk_openai if wire == "OpenAI" else _sdk_anthropic
            for case, request, n in (
                (f"streamed {WORDS}-word answer", answer, 100 if quick else 400),
                (f"request with {HISTORY} history messages", history, 20 if quick else 60),
            ):
                progress(f"client CPU, {wire} wire: {case}, {n} each way")
                runs = {
                    "ours": _ours(adapter, request),
                    "sdk": sdk(client, adapter, request),
                }
                out[(wire, case)] = await _cpu_ms(runs, n)
            await adapter.aclose()
            await client.close()
    return out


async def run(nats_url: str = "", *, quick: bool = False) -> list[str]:
    figures = await measure(quick)
    lines = [
        "| wire | request | plain SDK path (ms CPU) | our path (ms CPU) | ours / SDK |",
        "| --- | --- | --- | --- | --- |",
    ]
    for (wire, case), ms in figures.items():
        lines.append(
            f"| {wire} | {case} | {ms['sdk']:.2f} | {ms['ours']:.2f} "
            f"| {ms['ours'] / ms['sdk']:.2f} |"
        )
    load = os.getloadavg()[0]
    lines += ["", f"Load average at the end: {load:.1f} on {os.cpu_count()} CPUs."]
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    print("\n".join(asyncio.run(run(quick=parser.parse_args().quick))))
