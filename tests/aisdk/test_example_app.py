"""examples/aisdk-react in a real browser, on another origin than the gateway.

The example is built as its README says (``npm ci``, ``npm run build``: esbuild), served
from one origin, and the gateway (with agent, dev model) from another, allowing the
app's origin (CORS). Chromium (tests/web/browser.py) opens a new chat (``resume: true``:
204, no error), sends a long question, clicks Stop mid-answer; the turn must end
``turn_cancelled`` in the log, and a reload must not bring it back.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from litestar import Litestar
from litestar.static_files import create_static_files_router

from tests.aisdk.conftest import TOKENS, Stack
from tests.conftest import fresh_stream
from tests.web.browser import ensure_chromium, ensure_node_modules
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings
from threadline.services.commands.keys import DerivedIds
from threadline.services.devmodel import DevModelSettings, serve
from threadline.services.gateway import GatewayOptions, create_app, serve_app
from threadline.services.runtime.asgi import serve_asgi
from threadline.services.runtime.natsserver import EmbeddedNats

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "aisdk-react"
DRIVER = Path(__file__).resolve().parent / "example.mjs"
#: 400 words at 20 a second: still running long after Stop, unless cancelled
PROMPT = "[[pace:ttft=0,tps=20]] [[words:400]]"


def _npm(*args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is missing: the example app needs Node.js 18+ and npm", pytrace=False)
    done = subprocess.run(
        [npm, *args], cwd=EXAMPLE, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        pytest.fail(f"npm {' '.join(args)} in {EXAMPLE} failed:\n{tail}", pytrace=False)


def build_example() -> Path:
    """``npm ci`` (when node_modules is missing) and ``npm run build``: the app's folder."""
    if not (EXAMPLE / "node_modules" / "@ai-sdk" / "react" / "package.json").exists():
        _npm("ci", "--no-audit", "--no-fund")
    _npm("run", "build")
    assert (EXAMPLE / "dist" / "app.js").stat().st_size > 10_000
    return EXAMPLE


@pytest_asyncio.fixture
async def cross_origin(
    nats_server: EmbeddedNats, tmp_path: Path
) -> AsyncIterator[tuple[str, Stack]]:
    """(the app's base URL, the gateway stack allowing that origin): two origins."""
    folder = await asyncio.to_thread(build_example)
    static = Litestar(
        route_handlers=[create_static_files_router("/", directories=[folder], html_mode=True)],
        logging_config=None,
    )
    settings = Settings(tokens=TOKENS, data_dir=str(tmp_path))
    agent = AgentSettings(worker="example", retry_base_s=0.01, delta_window_s=0.02)
    store = await JetStreamEventStore.connect(nats_server.url, fresh_stream(), heartbeat_s=0.5)
    try:
        async with serve_asgi(static, name="example") as app_url:
            options = GatewayOptions(heartbeat_s=5.0, cors_origins=(app_url,))
            async with (
                serve(DevModelSettings.fast()) as model_url,
                serve_agent(settings, store, devmodel_url=model_url, agent=agent, env={}),
                serve_app(create_app(settings, store, options=options)) as url,
            ):
                yield app_url, Stack(url, store, "", DerivedIds(settings.id_key()))
    finally:
        await store.close()


async def test_stop_in_the_example_app_cancels_the_turn(cross_origin: tuple[str, Stack]) -> None:
    app_url, stack = cross_origin
    chromium = await asyncio.to_thread(ensure_chromium)
    modules = await asyncio.to_thread(ensure_node_modules)
    node = shutil.which("node")
    assert node is not None, "node is missing"
    assert app_url != stack.url
    chat = "example-chat-1"
    hash_ = urlencode({"gateway": stack.url, "token": "alice-token", "chat": chat})
    env = {
        **os.environ,
        "APP_URL": f"{app_url}/#{hash_}",
        "GATEWAY_URL": stack.url,
        "CHROMIUM": str(chromium),
        "PLAYWRIGHT": str(modules / "playwright-core" / "index.mjs"),
        "PROMPT": PROMPT,
    }
    proc = await asyncio.create_subprocess_exec(
        node, str(DRIVER), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"the browser script failed:\n{err.decode()}"
    result = json.loads(out.decode().splitlines()[-1])
    assert result["ok"] and result["problems"] == []
    session = stack.session(chat)
    ended = await stack.ended(session, result["turn"])
    assert ended.kind == "turn_cancelled"
    recs = await stack.store.load(session)
    assert [r.turn for r in recs if r.kind == "cancel_requested"] == [result["turn"]]
    assert not [r for r in recs if r.kind == "turn_completed"]
    # cross-origin calls, each allowed for the app's origin: resume (new chat: 204), the
    # message, the cancel, and after the reload a resume with nothing to resume
    calls = [tuple(r) for r in result["requests"]]
    stream, cancel = f"/api/chat/{chat}/stream", f"/api/chat/{chat}/cancel"
    assert calls == [
        ("GET", stream, 204, app_url),
        ("POST", "/api/chat", 200, app_url),
        ("POST", cancel, 202, app_url),
        ("GET", stream, 204, app_url),
    ]
    assert result["afterReload"] == {"messages": 0, "error": None}
