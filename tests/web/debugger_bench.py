"""``python -m tests.web.debugger_bench [TURNS]``: how long the replay debugger takes to
show a long session (TURNS turns, default 1,000: a question, a tool step every fifth
turn, eight deltas, the answer), timed in headless Chromium, with the gateway's three
reads (history, export, chain check) timed alone for comparison. Figures in
docs/debugger.md."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import fresh_stream
from tests.gateway.harness import agent_turn
from tests.web.browser import HERE, ensure_chromium, ensure_node_modules
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted, UserMessage
from threadline.events.store import NewEvent
from threadline.services.gateway import create_app, serve_app
from threadline.services.runtime.natsserver import EmbeddedNats

TOKEN = "bench-token"
SESSION = "debugger-bench"


async def fill(store: JetStreamEventStore, turns: int) -> int:
    await store.append(SESSION, NewEvent(event=SessionStarted(owner="me", title="long")))
    for i in range(turns):
        turn = f"t{i}"
        question = UserMessage(text=f"question {i} " * 5)
        await store.append(SESSION, NewEvent(event=question, turn=turn, actor="user:me", key=turn))
        deltas = tuple(f"word{j} " for j in range(8))
        await agent_turn(store, SESSION, turn, deltas=deltas, tool=i % 5 == 0)
    return (await store.head(SESSION)).version


async def reads(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        for name, path in (("history", ""), ("export", "/export"), ("verify", "/verify")):
            start = time.perf_counter()
            response = await client.get(f"/v1/sessions/{SESSION}{path}")
            response.raise_for_status()
            out[f"{name}_ms"] = round((time.perf_counter() - start) * 1000)
    return out


async def main(turns: int) -> int:
    chromium = ensure_chromium()
    ensure_node_modules()
    node = shutil.which("node")
    if node is None:
        print("node is missing", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="threadline-debugger-bench-") as tmp:
        nats = EmbeddedNats(Path(tmp) / "nats")
        await nats.start()
        try:
            store = await JetStreamEventStore.connect(nats.url, fresh_stream(), heartbeat_s=0.5)
            try:
                events = await fill(store, turns)
                app = create_app(Settings(tokens=f"{TOKEN}:me"), store)
                async with serve_app(app) as url:
                    alone = await reads(url)  # cold: the first read folds the session
                    env = {
                        **os.environ,
                        "GATEWAY_URL": url,
                        "TOKEN": TOKEN,
                        "CHROMIUM": str(chromium),
                        "SESSION": SESSION,
                        "TURNS": str(turns),
                    }
                    proc = await asyncio.create_subprocess_exec(
                        node, str(HERE / "debug-bench.mjs"), cwd=HERE, env=env,
                        stdout=asyncio.subprocess.PIPE,
                    )  # fmt: skip
                    out, _ = await proc.communicate()
                    if proc.returncode != 0:
                        return 1
            finally:
                await store.close()
        finally:
            await nats.stop()
    runs = json.loads(out.decode().splitlines()[-1])
    print(json.dumps({"turns": turns, "events": events, "reads_alone": alone, "page": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
