"""The peers running, each a pass-through to the same dev model as Threadline's stack:

* **LiteLLM proxy**: ``litellm --config`` with one model, ``openai/threadline-dev`` at the
  dev model's OpenAI base URL; a master key (it refuses to start without one) and no
  database (it stores nothing), one worker, logging at ERROR, the model cost map read
  from the package (no network at start-up);
* **AI SDK + resumable-stream + Redis**: ``node server.mjs`` (``bench/peers/aisdk/``) and
  a throwaway ``redis-server`` beside it.

A peer that cannot be installed or started is left out, and the report says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import progress
from bench.e2e_stack import clean_env
from bench.peers import install
from bench.peers.procs import Child, redis_server, running
from bench.stream_client import Wire, aisdk_wire, openai_wire
from threadline.services.runtime.processes import free_ports

LITELLM = "LiteLLM proxy"
AISDK = "AI SDK + resumable-stream + Redis"


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    wire: Wire
    #: process name -> pid; each counted with everything it starts
    pids: dict[str, int]


@dataclass
class Peers:
    running: list[Peer] = field(default_factory=list)
    #: peer name -> why it is not running
    missing: dict[str, str] = field(default_factory=dict)


def litellm_config(dev_url: str) -> str:
    return (
        "model_list:\n"
        "  - model_name: threadline-dev\n"
        "    litellm_params:\n"
        "      model: openai/threadline-dev\n"
        f"      api_base: {dev_url}/v1\n"
        "      api_key: bench\n"
    )


def _write_config(root: Path, dev_url: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "litellm.yaml"
    config.write_text(litellm_config(dev_url))
    return config


def _url(line: str) -> str:
    found = re.search(r"(http://[\d.]+:\d+)", line)
    if found is None:
        raise RuntimeError(f"no URL in {line!r}")
    return found[1]


@contextlib.asynccontextmanager
async def _litellm(dev_url: str, root: Path) -> AsyncIterator[Peer]:
    command = await install.litellm()
    config = _write_config(root, dev_url)
    (port,) = free_ports(1)
    key = f"sk-bench-{os.urandom(16).hex()}"
    env = clean_env() | {
        "LITELLM_MASTER_KEY": key,
        "LITELLM_LOG": "ERROR",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
    }
    argv = [str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]  # fmt: skip
    child = Child(
        "litellm", argv, env=env, log_path=root / "litellm.log",
        ready=r"Proxy initialized with Config", cwd=root,
    )  # fmt: skip
    async with running(child):
        url = f"http://127.0.0.1:{port}"
        await _listening(f"{url}/health/liveliness")
        yield Peer(LITELLM, url, openai_wire(token=key), {"litellm": child.pid})


async def _listening(url: str, timeout_s: float = 120.0) -> None:
    """Wait until ``url`` answers 200: the proxy prints nothing once it listens at log
    level ERROR, so this is bounded polling (start-up readiness only)."""
    async with httpx.AsyncClient(timeout=2.0) as client, asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _aisdk(dev_url: str, root: Path) -> AsyncIterator[Peer]:
    home = await install.aisdk()
    async with redis_server(root / "redis") as (redis_url, redis_pid):
        env = {**os.environ, "DEV_MODEL_URL": f"{dev_url}/v1", "REDIS_URL": redis_url,
               "PORT": "0", "NODE_ENV": "production"}  # fmt: skip
        child = Child(
            "aisdk", ["node", "server.mjs"], env=env, log_path=root / "aisdk.log",
            ready=r"aisdk peer on http://", cwd=home,
        )  # fmt: skip
        async with running(child) as line:
            pids = {"node": child.pid} | ({"redis": redis_pid} if redis_pid else {})
            yield Peer(AISDK, _url(line), aisdk_wire(), pids)


@contextlib.asynccontextmanager
async def running_peers(dev_url: str, root: Path) -> AsyncIterator[Peers]:
    """Every peer that installs and starts, pointed at the dev model at ``dev_url``."""
    peers = Peers()
    async with contextlib.AsyncExitStack() as stack:
        for name, start in ((LITELLM, _litellm), (AISDK, _aisdk)):
            try:
                peer = await stack.enter_async_context(start(dev_url, root / name.split()[0]))
            except Exception as exc:  # the others are still measured; the report says why
                peers.missing[name] = f"{type(exc).__name__}: {exc}"[:300]
                progress(f"{name} left out: {peers.missing[name]}")
            else:
                progress(f"{name} up at {peer.url}")
                peers.running.append(peer)
        yield peers


async def resume_check(peer: Peer, words: int = 20) -> str:
    """The AI SDK peer's resume GET works: a chat's stream, resumed once its first delta
    arrived, gives the whole answer (every delta, then the finish)."""
    chat = f"resume-check-{os.urandom(4).hex()}"
    text = f"Resume me. [[words:{words}]]"
    body = {"id": chat, "message": {"id": f"{chat}-m", "role": "user",
                                    "parts": [{"type": "text", "text": text}]}}  # fmt: skip
    async with (
        httpx.AsyncClient(base_url=peer.url, timeout=30) as client,
        client.stream("POST", "/api/chat", json=body) as post,
    ):
        lines = post.aiter_lines()
        async for line in lines:
            if '"type":"text-delta"' in line:
                break
        resumed = await client.get(f"/api/chat/{chat}/stream")
        async for _ in lines:
            pass
    deltas = resumed.text.count('"type":"text-delta"')
    if resumed.status_code != 200 or deltas != words or '"type":"finish"' not in resumed.text:
        raise RuntimeError(
            f"resume GET: HTTP {resumed.status_code}, {deltas} of {words} deltas: "
            f"{resumed.text[:200]!r}"
        )
    return f"resume GET checked: a stream resumed after its first delta gave all {words} deltas"
