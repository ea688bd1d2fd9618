"""The real AI SDK (Node) against a real gateway, agent, dev model and MCP server.

``node_modules`` is installed with ``npm ci`` from the committed lock file when it is
missing (CI gets it this way). Without Node.js or npm the tests fail, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import fresh_stream
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS
from threadline.events.store import Recorded
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings
from threadline.services.commands.keys import DerivedIds
from threadline.services.devmodel import DevModelSettings, serve
from threadline.services.gateway import GatewayOptions, create_app, serve_app
from threadline.services.runtime.natsserver import EmbeddedNats

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "chat.mjs"
TOKENS = "alice-token:alice,bob-token:bob,root-token:root:admin"
NODE_TIMEOUT_S = 60


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not on PATH: the AI SDK tests need Node.js 18+ and npm "
            "(https://nodejs.org) to run the real `ai` package",
            pytrace=False,
        )
    return path


@pytest_asyncio.fixture(scope="session")
async def node() -> str:
    """The ``node`` binary, with ``tests/aisdk/node_modules`` installed (``npm ci``)."""
    node = _tool("node")
    if not (HERE / "node_modules" / "ai" / "package.json").exists():
        npm = _tool("npm")
        proc = await asyncio.create_subprocess_exec(
            npm, "ci", "--no-audit", "--no-fund", cwd=HERE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        async with asyncio.timeout(300):
            out, _ = await proc.communicate()
        if proc.returncode != 0:
            pytest.fail(f"npm ci in {HERE} failed:\n{out.decode(errors='replace')}", pytrace=False)
    return node


async def run_node(node: str, args: dict[str, Any], stdin: str | None = None) -> Any:
    """Run chat.mjs with ``args``; its JSON output."""
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), json.dumps(args), cwd=HERE,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(NODE_TIMEOUT_S):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else b"")
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"node failed ({proc.returncode}):\n{err.decode()}"
    return json.loads(out)


@dataclass
class Stack:
    url: str
    store: JetStreamEventStore
    node: str
    ids: DerivedIds

    def session(self, chat: str, owner: str = "alice") -> str:
        """The session of ``owner``'s new chat ``chat`` (a chat id is per owner)."""
        return self.ids.chat(owner, chat)

    @property
    def api(self) -> str:
        return f"{self.url}/api/chat"

    def client(self, token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def ended(self, session: str, turn: str) -> Recorded:
        """The terminal event of ``turn``, once the agent has appended it."""
        async with asyncio.timeout(30), contextlib.aclosing(self.store.follow(session)) as recs:
            async for rec in recs:
                if rec.turn == turn and rec.kind in TERMINAL_KINDS:
                    return rec
        raise AssertionError("the session's log ended")

    async def chat(self, **args: Any) -> Any:
        """The AI SDK's chat core, as alice unless ``token`` says otherwise."""
        base = {"api": self.api, "token": "alice-token"}
        return await run_node(self.node, {**base, **args})


@pytest_asyncio.fixture(scope="module")
async def stack(
    node: str, nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """Gateway + agent + dev model + the bundled MCP server over stdio, on one stream."""
    settings = Settings(
        tokens=TOKENS,
        data_dir=str(tmp_path_factory.mktemp("aisdk")),
        mcp_servers={
            "threadline": {
                "transport": "stdio",
                "command": [sys.executable, "-m", "threadline.services.mcpserver"],
                "call_timeout_s": 10,
            }
        },
    )
    options = GatewayOptions(heartbeat_s=5.0, max_sse_per_owner=8)
    agent = AgentSettings(worker="aisdk", retry_base_s=0.01, delta_window_s=0.005)
    store = await JetStreamEventStore.connect(nats_server.url, fresh_stream(), heartbeat_s=0.5)
    try:
        async with (
            serve(DevModelSettings.fast()) as devmodel_url,
            serve_agent(
                settings, store, devmodel_url=devmodel_url, agent=agent, env={}, ack_wait_s=5
            ),
            serve_app(create_app(settings, store, options=options)) as url,
        ):
            yield Stack(url, store, node, DerivedIds(settings.id_key()))
    finally:
        await store.close()
