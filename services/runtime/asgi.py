"""Serve an ASGI app in-process on uvicorn, on a pre-bound socket, with a readiness signal.

Shared by the gateway and the dev model: ``async with serve_asgi(app) as base_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, Literal

import uvicorn

from threadline.base.errors import PortInUse
from threadline.services.runtime.slowclients import ConnectionLimits, guarded_protocol


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that reports readiness and leaves signal handling to its host."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose connections get TCP_NODELAY.

    Made with ``proto=IPPROTO_TCP`` on purpose: asyncio only sets TCP_NODELAY on accepted
    sockets whose protocol says TCP, and ``socket.create_server`` leaves it 0. Without
    it, a response written in two parts waits ~40 ms for the peer's delayed ACK (Nagle)
    on reused keep-alive connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(4096)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from None
        raise
    return sock


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: Literal["on", "off"] = "off",
    before_stop: Callable[[], None] | None = None,
    name: str = "server",
    limits: ConnectionLimits | None = None,
    http: Literal["auto", "h11", "httptools"] = "auto",
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port); yield its base URL.

    ``before_stop`` runs first on the way out (e.g. to end open streams). ``limits``
    reclaims connections from clients that send too slowly or stop reading
    (:mod:`.slowclients`); ``http`` picks uvicorn's HTTP implementation (``auto``:
    httptools when installed, else h11)."""
    sock = bind(host, port)
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_config=None,
        access_log=False,  # request lines carry ids; keep logs lean
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
        http=guarded_protocol(limits, http) if limits is not None else http,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.ensure_future(server.ready.wait())
    try:
        await asyncio.wait((task, ready), return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():  # serve() ended before start-up finished
            await task
            raise RuntimeError(f"the {name} stopped during start-up")
        yield base_url(host, sock.getsockname()[1])
    finally:
        ready.cancel()
        if before_stop is not None:
            before_stop()
        server.should_exit = True
        await task
        sock.close()
