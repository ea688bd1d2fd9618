"""A scripted HTTP server that fakes the providers' wire APIs byte for byte.

Tests queue :class:`Reply` objects; each request gets the next one. The server speaks
just enough HTTP/1.1 for the SDKs (one request per connection, chunked responses) and
can break a stream on purpose: ``drop`` aborts the socket mid-body, ``stall`` stops
sending until the server is closed (so the client's read timeout fires; nothing here
sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from threadline.base.redact import Redactor
from threadline.services.agent.providers import ProviderSettings, Secret, adapter_for
from threadline.services.agent.providers.parts import ModelAdapter


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    drop: bool = False  # abort the connection after the chunks (no chunked terminator)
    stall: bool = False  # after the chunks, send nothing more until the server closes


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def openai_sse(chunks: Iterable[dict[str, Any]], *, done: bool = True) -> list[bytes]:
    out = []
    for n, chunk in enumerate(chunks):
        body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        body.setdefault("choices", [])
        body.update(chunk)
        out.append(f"data: {json.dumps(body)}\n\n".encode())
        if n == 0:
            out.append(b": keep-alive comment\n\n")
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    """One OpenAI chunk with a single choice."""
    return {"choices": [{"index": index, "delta": fields, "finish_reason": finish}]}


def anthropic_sse(events: Iterable[dict[str, Any]]) -> list[bytes]:
    out = [b'event: ping\ndata: {"type": "ping"}\n\n']
    for event in events:
        out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    return out


def sse_reply(chunks: list[bytes], **kw: Any) -> Reply:
    return Reply(headers={"content-type": "text/event-stream"}, chunks=chunks, **kw)


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status=status,
        headers={"content-type": "application/json", **(headers or {})},
        chunks=[json.dumps(body).encode()],
    )


class WireServer:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    # helpers for tests (conftest modules cannot be imported under importlib mode)
    openai_sse = staticmethod(openai_sse)
    delta = staticmethod(delta)
    anthropic_sse = staticmethod(anthropic_sse)
    sse_reply = staticmethod(sse_reply)
    json_reply = staticmethod(json_reply)

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def last(self) -> Seen:
        return self.requests[-1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.strip().split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Seen(method, path, headers, body))
        reply = self.replies.popleft() if self.replies else json_reply(500, {"error": "no reply"})
        status_line = f"HTTP/1.1 {reply.status} X\r\n"
        head_out = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
        framing = "transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        writer.write(f"{status_line}{head_out}{framing}".encode())
        for chunk in reply.chunks:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
        if reply.drop:
            writer.transport.abort()
            return
        if reply.stall:
            await self._closing.wait()
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()


@pytest.fixture
async def wire() -> AsyncIterator[WireServer]:
    server = WireServer()
    await server.start()
    yield server
    await server.close()


AdapterFactory = Callable[..., ModelAdapter]


@pytest.fixture
async def make_adapter(wire: WireServer) -> AsyncIterator[AdapterFactory]:
    """Adapters pointed at the wire server; closed after the test."""
    made: list[ModelAdapter] = []

    def make(
        api: str = "openai",
        *,
        name: str | None = None,
        key: str | None = "sk-test-SECRET123",
        redactor: Redactor | None = None,
        **overrides: Any,
    ) -> ModelAdapter:
        name = name or api
        fields: dict[str, Any] = {
            "name": name,
            "api": api,
            "base_url": wire.url + ("/v1" if api == "openai" else ""),
            "api_key": Secret(key) if key else None,
            "models": ("test-model",),
            "default_model": "test-model",
            "label": {"openai": "OpenAI", "anthropic": "Anthropic"}.get(name, name),
            "key_env": f"{name.upper()}_API_KEY",
            "key_required": key is not None,
            "timeout_s": 10.0,
            "connect_timeout_s": 5.0,
        }
        fields.update(overrides)
        adapter = adapter_for(ProviderSettings(**fields), redactor=redactor or Redactor())
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.aclose()


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [part async for part in stream]


@pytest.fixture
def run() -> Callable[[AsyncIterator[Any]], Awaitable[list[Any]]]:
    return collect


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog
