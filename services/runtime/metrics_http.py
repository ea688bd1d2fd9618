"""``/metrics`` on a port of its own, for services without an HTTP server of their own
(``threadline agent --metrics-port``, ``threadline projector --metrics-port``), and
``/readyz`` when the service says what stops it (the agent: its readiness problems)."""

from __future__ import annotations

import argparse
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import msgspec

from threadline.base.metrics import CONTENT_TYPE, Registry, default_registry
from threadline.services.runtime.asgi import serve_asgi

Scope = dict[str, Any]
#: what stops the service now, by check (empty: ready)
Problems = Callable[[], Mapping[str, str] | Awaitable[Mapping[str, str]]]


def metrics_app(registry: Registry | None = None, ready: Problems | None = None) -> Any:
    """A tiny ASGI app: ``GET /metrics`` renders ``registry``; with ``ready``,
    ``GET /readyz`` answers 200, or 503 with the problems; anything else is a 404."""
    reg = registry or default_registry()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/readyz" and ready is not None and scope["method"] == "GET":
            found = ready()
            checks = dict(await found if inspect.isawaitable(found) else found)
            health = {"status": "unavailable" if checks else "ok", "checks": checks}
            body, ctype = msgspec.json.encode(health), "application/json"
            status = 503 if checks else 200
        elif scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 404, b"not found: try /metrics\n", "text/plain"
        else:
            status, body, ctype = 200, (await reg.render()).encode(), CONTENT_TYPE
        headers = [(b"content-type", ctype.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    return app


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics at /metrics on this port (0: a free one; default: off)",
    )
    parser.add_argument(
        "--metrics-host", help="interface for --metrics-port (default THREADLINE_HOST)"
    )


@contextlib.asynccontextmanager
async def serve_metrics(
    port: int | None,
    *,
    host: str = "127.0.0.1",
    registry: Registry | None = None,
    ready: Problems | None = None,
) -> AsyncIterator[str | None]:
    """Serve ``/metrics`` on ``host:port`` (0: a free port) and yield its URL; with
    ``port`` None, serve nothing and yield None."""
    if port is None:
        yield None
        return
    app = metrics_app(registry, ready)
    async with serve_asgi(app, host=host, port=port, name="metrics") as url:
        yield f"{url}/metrics"
