"""Everything a client needs, in the test process: the dev model, an agent worker with the
bundled MCP server, and the gateway on a free port, over a fresh stream on the session's
nats-server. For tests that drive the gateway from outside (a browser, ``threadline chat``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import fresh_stream
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings
from threadline.services.devmodel import DevModelSettings, serve
from threadline.services.gateway import GatewayOptions, create_app, serve_app

TOKEN = "stack-token-3c1f9a"
OWNER = "tester"


@dataclass
class Stack:
    url: str
    token: str
    store: JetStreamEventStore


@contextlib.asynccontextmanager
async def running_stack(
    nats_url: str,
    data_dir: Path,
    *,
    devmodel: DevModelSettings | None = None,
    max_stream_s: float = 3600.0,
    dev_signin: bool = False,
) -> AsyncIterator[Stack]:
    """``max_stream_s``: SSE streams end this often (clients must resume with Last-Event-ID).
    ``dev_signin``: the web page may fetch the token, as under ``threadline up``."""
    settings = Settings(
        data_dir=str(data_dir),
        tokens=f"{TOKEN}:{OWNER}",
        mcp_servers={
            "threadline": {
                "transport": "stdio",
                "command": [sys.executable, "-m", "threadline.services.mcpserver"],
                "call_timeout_s": 5,
            }
        },
    )
    agent = AgentSettings(worker="test", retry_base_s=0.01, delta_window_s=0.01)
    options = GatewayOptions(heartbeat_s=5.0, retry_ms=300, max_stream_s=max_stream_s)
    store = await JetStreamEventStore.connect(nats_url, fresh_stream(), heartbeat_s=0.5)
    try:
        async with (
            serve(devmodel or DevModelSettings(ttft_ms=20, tokens_per_second=100)) as model_url,
            serve_agent(settings, store, devmodel_url=model_url, agent=agent, env={}, ack_wait_s=5),
            serve_app(
                create_app(
                    settings, store, options=options, dev_signin=TOKEN if dev_signin else None
                )
            ) as url,
        ):
            yield Stack(url, TOKEN, store)
    finally:
        await store.close()
