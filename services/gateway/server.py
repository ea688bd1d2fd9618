"""Serve the gateway in-process on uvicorn: ``async with serve_gateway(...) as base_url``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar

from threadline.base.config import Settings
from threadline.events.store import EventStore
from threadline.services.commands.catalog import Catalog
from threadline.services.gateway.app import create_app, gateway_of
from threadline.services.gateway.history import HistoryReader
from threadline.services.gateway.options import GatewayOptions
from threadline.services.runtime.asgi import serve_asgi
from threadline.services.runtime.slowclients import ConnectionLimits


@contextlib.asynccontextmanager
async def serve_app(app: Litestar, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve an app made by :func:`create_app` on ``host:port`` (0: a free port).

    Connections of clients too slow to send a request or that stop reading are
    reclaimed (``read_timeout_s``, ``send_timeout_s`` of the gateway's options)."""
    gateway = gateway_of(app)
    options = gateway.options
    limits = ConnectionLimits(
        read_timeout_s=options.read_timeout_s,
        read_min_rate=options.read_min_rate,
        send_timeout_s=options.send_timeout_s,
        on_reclaim=lambda why: gateway.metrics.connections_reclaimed.inc(reason=why),
    )
    async with serve_asgi(
        app, host=host, port=port, lifespan="on",
        before_stop=gateway.end_streams, name="gateway", limits=limits,
    ) as url:  # fmt: skip
        yield url


@contextlib.asynccontextmanager
async def serve_gateway(
    settings: Settings,
    store: EventStore,
    *,
    host: str | None = None,
    port: int | None = None,
    history: HistoryReader | None = None,
    catalog: Catalog | None = None,
    options: GatewayOptions | None = None,
    dev_signin: str | None = None,
) -> AsyncIterator[str]:
    """Run the gateway until the block ends; yields its base URL (no trailing slash).

    ``host``/``port`` default to ``settings.host``/``settings.port`` (port 0: a free one).
    ``dev_signin``: see :func:`create_app`.
    """
    app = create_app(
        settings, store, history=history, catalog=catalog, options=options, dev_signin=dev_signin
    )
    async with serve_app(
        app,
        host=settings.host if host is None else host,
        port=settings.port if port is None else port,
    ) as url:
        yield url
