"""``threadline gateway`` on its own: a NATS URL, a dev token when none is configured,
a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import httpx

from tests.conftest import fresh_stream
from threadline.services.runtime.natsserver import EmbeddedNats


async def test_the_gateway_command_serves_with_a_dev_token_and_stops_cleanly(
    nats_server: EmbeddedNats,
) -> None:
    stream = fresh_stream()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADLINE_", "OPENAI_"))}
    env |= {
        "THREADLINE_NATS_URL": nats_server.url,
        "THREADLINE_STREAM": stream.name,
        "THREADLINE_PREFIX": stream.prefix,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", "gateway", "--port", "0",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = ""
    async with asyncio.timeout(30):
        while "Press Ctrl-C" not in banner:
            line = (await proc.stdout.readline()).decode()
            assert line, banner
            banner += line
    url = re.search(r"gateway on (http://\S+)", banner)
    token = re.search(r"dev token \(owner 'dev'\): (\S+)", banner)
    assert url and token, banner
    async with httpx.AsyncClient(base_url=url[1]) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post("/v1/sessions")).status_code == 401
        auth = {"Authorization": f"Bearer {token[1]}"}
        created = await client.post("/v1/sessions", headers=auth)
        assert created.status_code == 201
        detail = await client.get(f"/v1/sessions/{created.json()['id']}", headers=auth)
        assert detail.json()["owner"] == "dev"
    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert "stopped." in out.decode()
