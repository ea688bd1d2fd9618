"""The dev model's ASGI application: routing, request reading, and the shared flow.

Routes: ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` (Anthropic),
``GET /v1/models`` (OpenAI's shape, or Anthropic's when ``anthropic-version`` is
sent), ``GET /v1/models/{id}``, ``GET /health`` and ``GET /debug/requests`` (how many
completion requests arrived, and the bodies of the newest, for tests to inspect).
:func:`serve` runs it in-process on uvicorn: ``async with serve(settings) as base_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import msgspec

from threadline.services.runtime.asgi import serve_asgi

from . import anthropic_wire, openai_wire, player
from .conversation import Conversation, RequestError, bearer_key
from .player import Frame, Receive, Reply, Send
from .script import Failure, FailureLedger, Script, plan
from .settings import DevModelSettings


class Wire(Protocol):
    """What a wire format module (``openai_wire``, ``anthropic_wire``) provides."""

    def parse_request(self, body: dict[str, Any], api_key: str | None) -> Conversation: ...
    def stream(self, script: Script, conv: Conversation) -> Iterator[Frame]: ...
    def complete(self, script: Script, conv: Conversation) -> bytes: ...
    def error(self, failure: Failure) -> Reply: ...
    def models(self, names: tuple[str, ...]) -> bytes: ...


OPENAI: Wire = openai_wire
ANTHROPIC: Wire = anthropic_wire
_ROUTES = {
    "/v1/chat/completions": OPENAI,
    "/chat/completions": OPENAI,
    "/v1/messages": ANTHROPIC,
}


class _TooLarge(Exception):
    pass


class DevModelApp:
    """A raw ASGI callable; one instance holds the ``times=N`` ledger."""

    def __init__(self, settings: DevModelSettings | None = None) -> None:
        self.settings = settings or DevModelSettings()
        self.ledger = FailureLedger()
        #: completion requests received (whole bodies read), and the newest bodies
        self.requests_total = 0
        self.requests: deque[dict[str, Any]] = deque(maxlen=self.settings.record_requests)
        self._watches: set[asyncio.Task[None]] = set()
        self._closed = False

    def close(self) -> None:
        """End every stream in progress (and any started later) as abandoned."""
        self._closed = True
        for watch in list(self._watches):
            watch.cancel()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"].rstrip("/") or "/"
        method: str = scope["method"]
        headers = dict(scope["headers"])
        wire = _ROUTES.get(path)
        if wire is not None and method == "POST":
            await self._generate(wire, path, headers, receive, send)
        elif method in ("GET", "HEAD"):
            await _reply(send, self._get(path, headers))
        else:
            await _reply(send, OPENAI.error(_invalid(404, f"no route for {method} {path}")))

    def _get(self, path: str, headers: dict[bytes, bytes]) -> Reply:
        wire = ANTHROPIC if b"anthropic-version" in headers else OPENAI
        model = path.removeprefix("/v1/models/")
        if path == "/health":
            return Reply.json(200, b'{"status":"ok"}')
        if path == "/debug/requests":
            listing = {"total": self.requests_total, "requests": list(self.requests)}
            return Reply.json(200, msgspec.json.encode(listing))
        if path == "/v1/models":
            return Reply.json(200, wire.models(self.settings.models))
        if model == path:
            return wire.error(_invalid(404, f"no route for GET {path}"))
        if model not in self.settings.models:
            return wire.error(Failure(404, "model", model))
        listing = msgspec.json.decode(wire.models((model,)))
        return Reply.json(200, msgspec.json.encode(listing["data"][0]))

    async def _generate(
        self, wire: Wire, path: str, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        try:
            raw = await self._read_body(receive)
        except _TooLarge:
            await _reply(send, wire.error(_invalid(413, "body too large")))
            return
        if raw is None:  # the client left before sending the whole request
            return
        self.requests_total += 1
        try:
            data = msgspec.json.decode(raw)
            if not isinstance(data, dict):
                raise RequestError("the request body must be a JSON object")
            if self.requests.maxlen:  # the body only: keys travel in headers
                self.requests.append({"path": path, "body": data})
            conv = wire.parse_request(data, bearer_key(headers))
            outcome = plan(conv, self.settings, self.ledger)
        except (msgspec.DecodeError, RequestError) as exc:
            outcome = _invalid(400, str(exc))
        if isinstance(outcome, Failure):
            await _reply(send, wire.error(outcome))
            return
        watch = self._watch(receive)
        try:
            if conv.stream:
                await player.stream(wire.stream(outcome, conv), outcome, send, watch)
            else:
                await player.complete(wire.complete(outcome, conv), outcome, send, watch)
        finally:
            watch.cancel()

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _watch(self, receive: Receive) -> asyncio.Task[None]:
        watch = asyncio.ensure_future(player.wait_disconnect(receive))
        self._watches.add(watch)
        watch.add_done_callback(self._watches.discard)
        if self._closed:
            watch.cancel()
        return watch


def _invalid(status: int, detail: str) -> Failure:
    """A request refused before any script: malformed, too large, or no such route."""
    return Failure(status, "invalid", "", detail=detail)


async def _reply(send: Send, reply: Reply) -> None:
    headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
    await player.start(send, reply.status, headers)
    await player.body(send, reply.body)


def create_app(settings: DevModelSettings | None = None) -> DevModelApp:
    """The dev model as an ASGI application (serve it with any ASGI server)."""
    return DevModelApp(settings)


@contextlib.asynccontextmanager
async def serve(
    settings: DevModelSettings | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the dev model on ``host:port`` (0 = a free port) and yield its base URL.

    The URL has no path: OpenAI clients want ``base_url + "/v1"``, Anthropic clients
    ``base_url`` itself. Leaving the block ends streams in progress and stops the
    server.
    """
    app = DevModelApp(settings)
    async with serve_asgi(
        app, host=host, port=port, before_stop=app.close, name="dev model server"
    ) as url:
        yield url
