"""Issue 12 #4: a provider's address never reaches the user. When a provider drops the
connection or refuses it, the turn's reason (the stored ``turn_failed`` and ``fallback``
events, and what the gateway returns for the session) names the provider ("OpenAI"), not
the deployment's network (host, port, URL). The operator log keeps the address.

Through the real stack: gateway, agent, the real SDKs, and two endpoints of our own on
loopback: one that answers a streaming request with event-stream headers and then aborts
the connection, and a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.hardening.stack import Stack, running_stack
from threadline.events.schema import TurnFailed
from threadline.services.agent.turn import AgentSettings
from threadline.services.runtime.natsserver import EmbeddedNats

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def _drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request, start a streamed answer, then abort the connection."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        length = next(
            (int(line.split(":")[1]) for line in head.split("\r\n") if "content-length" in line),
            0,
        )
        await reader.readexactly(length)
        writer.write(HEAD)
        await writer.drain()
    writer.transport.abort()


def _free_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Endpoints:
    drop_port = 0
    refused_port = _free_port()


@pytest_asyncio.fixture(scope="module")
async def stack(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    server = await asyncio.start_server(_drop, "127.0.0.1", 0)
    Endpoints.drop_port = server.sockets[0].getsockname()[1]
    providers = {
        "openai": {"base_url": f"http://127.0.0.1:{Endpoints.drop_port}/v1", "key_required": False},
        "anthropic": {
            "base_url": f"http://127.0.0.1:{Endpoints.refused_port}",
            "key_required": False,
        },
    }
    agent = AgentSettings(worker="addresses", retry_base_s=0.01, max_retries=1)
    try:
        async with running_stack(
            nats_server.url, Path(tmp_path_factory.mktemp("addresses")), providers=providers,
            agent=agent, mcp_servers={},
        ) as stack:  # fmt: skip
            yield stack
    finally:
        server.close()
        await server.wait_closed()


def _addresses(port: int) -> list[str]:
    return ["127.0.0.1", f":{port}", "http://", "localhost"]


@pytest.mark.parametrize(
    ("provider", "label", "words"),
    [("openai", "OpenAI", "stream"), ("anthropic", "Anthropic", "could not connect")],
)
async def test_a_failed_provider_is_named_without_its_address(
    stack: Stack, caplog: pytest.LogCaptureFixture, provider: str, label: str, words: str
) -> None:
    caplog.set_level(logging.INFO)
    port = Endpoints.drop_port if provider == "openai" else Endpoints.refused_port
    session = await stack.new_session(provider=provider)
    events = await stack.until_terminal(session, await stack.say(session, "hello"))
    failed = events[-1].event
    assert isinstance(failed, TurnFailed), failed
    assert (failed.error, label in failed.message) == ("network", True), failed
    assert words in failed.message, failed
    shown = (await stack.client("alice").get(f"/v1/sessions/{session}")).text
    assert failed.message in shown.replace('\\"', '"')
    stored = "\n".join(str(rec.event) for rec in await stack.store.load(session))
    leaks = [a for a in _addresses(port) for text in (stored, shown) if a in text]
    assert not leaks, (leaks, failed.message)
    # the operator's log keeps where the provider was
    assert any(f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)
