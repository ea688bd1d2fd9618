"""One gateway per test module, on the session's nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.gateway.harness import Harness, running_gateway
from threadline.services.runtime.natsserver import EmbeddedNats


@pytest_asyncio.fixture(scope="module")
async def gw(nats_server: EmbeddedNats) -> AsyncIterator[Harness]:
    async with running_gateway(nats_server.url) as harness:
        yield harness
