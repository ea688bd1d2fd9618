"""A gateway listing sessions from the projections, with the projector running in-process
(as ``threadline up`` wires it), beside one listing them from the log, on one store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import fresh_stream
from tests.gateway.harness import MCP_SERVERS, PROVIDERS, TOKENS, Harness, gateway_options
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.projections import Projector, serve_projector
from threadline.services.gateway import GatewayOptions, create_app, serve_app
from threadline.services.gateway.projection_history import ProjectionHistory


@dataclass
class Pair:
    #: the gateway listing sessions and usage from the projections' views
    views: Harness
    #: the gateway listing sessions from the log (None unless asked for)
    log: Harness | None
    projector: Projector
    settings: Settings


def views_settings(data_dir: Path) -> Settings:
    return Settings(
        tokens=TOKENS, providers=PROVIDERS, mcp_servers=MCP_SERVERS, data_dir=str(data_dir)
    )


@contextlib.asynccontextmanager
async def running_views_gateway(
    nats_url: str,
    data_dir: Path,
    options: GatewayOptions | None = None,
    *,
    with_log: bool = True,
) -> AsyncIterator[Pair]:
    """The views gateway (and, ``with_log``, a log-reading one) on a fresh stream, with
    the projector writing SQLite views under ``data_dir``."""
    store = await JetStreamEventStore.connect(nats_url, fresh_stream(), heartbeat_s=0.5)
    settings = views_settings(data_dir)
    options = options or gateway_options()
    try:
        async with contextlib.AsyncExitStack() as stack:
            projector = await stack.enter_async_context(serve_projector(settings, store))
            history = ProjectionHistory(projector.reader)
            views_app = create_app(settings, store, options=options, history=history)
            views = Harness(await stack.enter_async_context(serve_app(views_app)), views_app, store)
            log: Harness | None = None
            if with_log:
                log_app = create_app(settings, store, options=options)
                log = Harness(await stack.enter_async_context(serve_app(log_app)), log_app, store)
            try:
                yield Pair(views, log, projector, settings)
            finally:
                for harness in (views, log):
                    for client in harness.clients.values() if harness else ():
                        await client.aclose()
    finally:
        await store.close()


def log_of(pair: Pair) -> Harness:
    assert pair.log is not None
    return pair.log
