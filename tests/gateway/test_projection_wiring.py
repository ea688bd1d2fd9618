"""Where the gateway gets its sessions list and usage: ``threadline up`` from the
projector it runs; ``threadline gateway`` from the projections when configured to
(``--history``, ``THREADLINE_GATEWAY_HISTORY``, or a PostgreSQL ``THREADLINE_DATABASE_URL``;
a projector running elsewhere keeps them current), else from the log. A session itself
is always the fold of its events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.conftest import fresh_stream
from tests.gateway.harness import TOKENS
from tests.gateway.views_harness import running_views_gateway
from threadline.base.config import Settings, StreamSettings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.sessions import SessionCache
from threadline.services.cli.stack import PROVIDER_KEY_VARS, start_services
from threadline.services.gateway.history import read_session
from threadline.services.runtime.natsserver import EmbeddedNats

ALICE = {"Authorization": "Bearer alice-token"}


@contextlib.asynccontextmanager
async def gateway_command(
    nats_url: str, stream: StreamSettings, data_dir: Path, *args: str
) -> AsyncIterator[tuple[str, str]]:
    """``threadline gateway`` in a subprocess; yields (base URL, banner)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADLINE_", "OPENAI_"))}
    env |= {
        "THREADLINE_NATS_URL": nats_url, "THREADLINE_STREAM": stream.name,
        "THREADLINE_PREFIX": stream.prefix, "THREADLINE_DATA_DIR": str(data_dir),
        "THREADLINE_TOKENS": TOKENS,
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", "gateway", "--port", "0", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = ""
    try:
        async with asyncio.timeout(30):
            while "Press Ctrl-C" not in banner:
                line = (await proc.stdout.readline()).decode()
                assert line, banner
                banner += line
        url = re.search(r"gateway on (http://\S+)", banner)
        assert url, banner
        yield url[1], banner
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, banner + out.decode()


async def test_the_gateway_command_reads_the_views_a_projector_keeps(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with running_views_gateway(nats_server.url, tmp_path, with_log=False) as pair:
        stream = pair.views.store.settings
        async with (
            gateway_command(nats_server.url, stream, tmp_path, "--history", "projections") as (
                url,
                banner,
            ),
            httpx.AsyncClient(base_url=url, headers=ALICE, timeout=15) as client,
        ):
            assert "history: projections in" in banner, banner
            session = (await client.post("/v1/sessions", json={"title": "apart"})).json()["id"]
            for text in ("one", "two"):  # read-your-writes across processes
                posted = (
                    await client.post(f"/v1/sessions/{session}/messages", json={"text": text})
                ).json()
                detail = await client.get(
                    f"/v1/sessions/{session}", params={"wait_for": posted["position"]}
                )
                assert detail.json()["messages"][-1]["text"] == text
            assert (await client.get("/v1/usage")).status_code == 200


async def test_unless_configured_the_gateway_command_lists_from_the_log(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """A projections database that happens to exist changes nothing: the choice is
    configuration."""
    (tmp_path / "projections.sqlite3").write_bytes(b"")
    async with (
        gateway_command(nats_server.url, fresh_stream(), tmp_path) as (url, banner),
        httpx.AsyncClient(base_url=url, headers=ALICE, timeout=15) as client,
    ):
        assert "history: sessions folded from the log" in banner, banner
        assert (await client.get("/v1/usage")).status_code == 501


async def test_up_serves_history_from_its_projector(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real agent and dev model answer with a tool call; the gateway ``up`` starts
    serves that turn as the fold of the log, and lists and counts it from the views."""
    for var in PROVIDER_KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    store = await JetStreamEventStore.connect(nats_server.url, fresh_stream(), heartbeat_s=0.5)
    settings = Settings(data_dir=str(tmp_path), port=0, tokens=TOKENS)
    try:
        async with contextlib.AsyncExitStack() as stack:
            running = await start_services(stack, settings, store)
            url = running.urls["gateway_url"]
            async with httpx.AsyncClient(base_url=url, headers=ALICE, timeout=15) as client:
                made = await client.post("/v1/sessions", json={"tool_servers": ["threadline"]})
                assert made.status_code == 201, made.text
                session = made.json()["id"]
                text = 'add [[tool:add {"a": 2, "b": 3}]]'
                await client.post(f"/v1/sessions/{session}/messages", json={"text": text})
                async with asyncio.timeout(60):
                    async for rec in store.follow(session):
                        if rec.kind in ("turn_completed", "turn_failed"):
                            break
                assert rec.kind == "turn_completed"
                response = await client.get(
                    f"/v1/sessions/{session}", params={"wait_for": rec.position}
                )
                views = response.json()
                folded = await read_session(SessionCache(store), session)
                assert folded is not None and views == msgspec.to_builtins(folded)
                assert [m["role"] for m in views["messages"]] == [
                    "user", "assistant", "tool", "assistant",
                ]  # fmt: skip
                usage = await client.get("/v1/usage", params={"wait_for": rec.position})
                assert usage.status_code == 200 and usage.json()["turns"] == 1
    finally:
        await store.close()
