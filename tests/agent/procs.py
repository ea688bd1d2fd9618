"""Agent worker processes for crash and stall tests."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from threadline.events.jetstream import JetStreamEventStore


async def spawn_agent(
    store: JetStreamEventStore,
    devmodel: str,
    data: Path,
    *,
    ack_wait: float = 1.5,
    stderr: int = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """``threadline agent`` on the store's stream; returns once it consumes.

    ``stderr`` is where its log goes: ``PIPE`` (the default) for a test that reads it,
    ``DEVNULL`` for one that runs many and never reads them (a full pipe would stall it).
    """
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {
        "THREADLINE_NATS_URL": store.nc.connected_url.geturl() if store.nc.connected_url else "",
        "THREADLINE_STREAM": store.settings.name,
        "THREADLINE_PREFIX": store.settings.prefix,
        "THREADLINE_DEVMODEL_URL": devmodel,
        "THREADLINE_DATA_DIR": str(data),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", "agent", "--ack-wait", str(ack_wait),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = await proc.stdout.readline()
    assert b"agent worker consuming" in line, line
    return proc
