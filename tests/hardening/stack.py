"""The whole system in the test process, for the hardening tests: a real gateway (uvicorn,
with its slow-client guard), an agent worker, the dev model and MCP servers, over a fresh
stream on the session's nats-server. Several owners, each with a static token; options,
providers, MCP servers and the agent's environment are the test's to choose."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar

from tests.conftest import fresh_stream
from tests.support import secret_scan
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS
from threadline.events.store import Recorded
from threadline.services.agent.service import serve_agent
from threadline.services.agent.telemetry import AgentTelemetry
from threadline.services.agent.turn import AgentSettings
from threadline.services.devmodel import DevModelSettings, serve
from threadline.services.gateway import Gateway, GatewayOptions, create_app, gateway_of, serve_app

OWNERS = ("alice", "bob", "mallory")
BUNDLED_MCP = [sys.executable, "-m", "threadline.services.mcpserver", "--transport", "stdio"]


def token_of(owner: str) -> str:
    return f"{owner}-hardening-token"


@dataclass
class Stack:
    url: str
    app: Litestar
    store: JetStreamEventStore
    model_url: str
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    @property
    def gateway(self) -> Gateway:
        return gateway_of(self.app)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def client(self, owner: str) -> httpx.AsyncClient:
        if owner not in self.clients:
            self.clients[owner] = httpx.AsyncClient(
                base_url=self.url,
                headers={"Authorization": f"Bearer {token_of(owner)}"},
                timeout=30,
                limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
            )
        return self.clients[owner]

    async def new_session(self, owner: str = "alice", **body: Any) -> str:
        response = await self.client(owner).post("/v1/sessions", json=body)
        assert response.status_code == 201, response.text
        session: str = response.json()["id"]
        return session

    async def say(self, session: str, text: str, owner: str = "alice") -> str:
        response = await self.client(owner).post(
            f"/v1/sessions/{session}/messages", json={"text": text}
        )
        assert response.status_code == 202, response.text
        turn: str = response.json()["turn_id"]
        return turn

    async def until_terminal(self, session: str, turn: str, wait_s: float = 60) -> list[Recorded]:
        """The stored events of ``turn`` up to and including its terminal event."""
        out: list[Recorded] = []
        async with asyncio.timeout(wait_s):
            async for rec in self.store.follow(session):
                if rec.turn == turn:
                    out.append(rec)
                    if rec.kind in TERMINAL_KINDS:
                        return out
        raise AssertionError("unreachable")

    async def model_requests(self) -> dict[str, Any]:
        """What the dev model received: ``{"total": N, "requests": [{path, body}...]}``."""
        async with httpx.AsyncClient() as http:
            answer: dict[str, Any] = (await http.get(f"{self.model_url}/debug/requests")).json()
        return answer


@contextlib.asynccontextmanager
async def running_stack(
    nats_url: str,
    data_dir: Path,
    *,
    options: GatewayOptions | None = None,
    devmodel: DevModelSettings | None = None,
    providers: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None = None,
    mcp_servers: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    agent: AgentSettings | None = None,
    owners: Sequence[str] = OWNERS,
    telemetry: AgentTelemetry | None = None,
) -> AsyncIterator[Stack]:
    """``providers`` may be a function of the dev model's base URL; ``mcp_servers``
    defaults to the bundled server over stdio as ``threadline``; ``env`` is the agent's
    whole environment (keys included); default: none."""
    agent = agent or AgentSettings(worker="hardening", retry_base_s=0.01, delta_window_s=0.01)
    options = options or GatewayOptions(heartbeat_s=5.0, retry_ms=300)
    for owner in owners:  # bearer tokens are secrets too: never in a log line
        secret_scan.watch(token_of(owner), f"token of {owner}")
    store = await JetStreamEventStore.connect(nats_url, fresh_stream(), heartbeat_s=0.5)
    stack: Stack | None = None
    try:
        async with serve(
            devmodel or DevModelSettings(ttft_ms=20, tokens_per_second=200)
        ) as model_url:
            settings = Settings(
                data_dir=str(data_dir),
                tokens=",".join(f"{token_of(o)}:{o}" for o in owners),
                providers=dict(providers(model_url) if callable(providers) else providers or {}),
                mcp_servers=dict(
                    mcp_servers
                    if mcp_servers is not None
                    else {"threadline": {"transport": "stdio", "command": BUNDLED_MCP}}
                ),
            )
            async with serve_agent(
                settings, store, devmodel_url=model_url, agent=agent, env=dict(env or {}),
                ack_wait_s=5, telemetry=telemetry,
            ):  # fmt: skip
                app = create_app(settings, store, options=options)
                async with serve_app(app) as url:
                    stack = Stack(url, app, store, model_url)
                    yield stack
    finally:
        if stack is not None:
            for client in stack.clients.values():
                await client.aclose()
        await store.close()
