"""``threadline gateway``: run the HTTP gateway alone against a NATS server.

Uses ``THREADLINE_NATS_URL`` (or the server a running ``threadline up`` recorded for this
data dir). With no token and no JWT key configured it uses the dev token kept in the data
dir (made on first use, as ``threadline up`` does) and prints it.
Until the ``threadline`` command lists it, ``python -m threadline.services.cli gateway``
runs it the same way.

A session (``GET /v1/sessions/{id}``) is always the fold of its events. Where the
sessions list and usage come from is configuration (``--history``, else
``THREADLINE_GATEWAY_HISTORY``): ``projections`` reads the projections' views
(``THREADLINE_DATABASE_URL``, else ``<data dir>/projections.sqlite3``), kept current by a
``threadline projector`` (or ``threadline up``) running elsewhere; ``log`` keeps the list
from the log and needs nothing else (no ``/v1/usage``). Unset: ``projections`` when
``THREADLINE_DATABASE_URL`` is configured, else ``log``.
"""

from __future__ import annotations

import argparse
import contextlib

from threadline.base.config import Settings
from threadline.base.errors import ConfigurationError
from threadline.events.store import EventStore
from threadline.projections import ProjectionReader
from threadline.projections.metrics import watch_views
from threadline.services.cli.stack import deployment_catalog
from threadline.services.gateway import GatewayOptions, ensure_dev_token, serve_gateway
from threadline.services.gateway.history import HistoryReader
from threadline.services.gateway.projection_history import ProjectionHistory
from threadline.services.runtime import heap
from threadline.services.runtime.connect import connected, dev_token, running_nats_url
from threadline.services.runtime.natsauth import service_url
from threadline.services.runtime.processes import stop_event


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (default THREADLINE_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default THREADLINE_PORT)")
    parser.add_argument(
        "--history",
        choices=("projections", "log"),
        help="serve the sessions list and usage from the projections' views or the log "
        "(default: THREADLINE_GATEWAY_HISTORY, else projections when "
        "THREADLINE_DATABASE_URL is set, else log)",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.nats_url or running_nats_url(settings)
    if url is not None and url != settings.nats_url:  # `up`'s, as its gateway user
        url = service_url(url, settings.data_path, "gateway")
    if url is None:
        raise ConfigurationError(
            "no NATS server: set THREADLINE_NATS_URL (or run `threadline up` for everything)"
        )
    options = GatewayOptions.from_env()
    settings, token = ensure_dev_token(settings, options, make=lambda: dev_token(settings))
    stop = stop_event()
    async with connected(settings, url, "gateway") as store, contextlib.AsyncExitStack() as stack:
        history, where = await open_history(stack, args.history or options.history, settings, store)
        base = await stack.enter_async_context(
            serve_gateway(
                settings,
                store,
                host=args.host,
                port=args.port,
                options=options,
                catalog=deployment_catalog(settings),
                history=history,
            )
        )
        heap.settle()
        print(f"Threadline gateway on {base} (API schema: {base}/schema/openapi.json)")
        print(f"  history: {where}")
        if token is not None:
            print(f"  dev token (owner 'dev'): {token}")
            print(f"  try: curl -H 'Authorization: Bearer {token}' {base}/v1/sessions")
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()
        print("stopping ...", flush=True)
    print("stopped.", flush=True)
    return 0


async def open_history(
    stack: contextlib.AsyncExitStack, choice: str | None, settings: Settings, store: EventStore
) -> tuple[HistoryReader | None, str]:
    """The sessions-list reader ``choice`` names (None: the gateway's own, from the log)
    and a line saying where it reads. Unset: the projections when PostgreSQL is
    configured, else the log (never a guess from whether a file happens to exist)."""
    if choice == "log" or (choice is None and not settings.database_url):
        return None, "sessions folded from the log (no /v1/usage; --history projections)"
    reader = await stack.enter_async_context(ProjectionReader.open(settings))
    stack.callback(watch_views(store, reader.recorder))  # projection lag on /metrics
    where = f"projections in {reader.recorder.location} (kept current by a projector)"
    return ProjectionHistory(reader), where
