"""Run the dev model in-process on uvicorn: ``async with serve(settings) as base_url``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from threadline.services.runtime.asgi import serve_asgi

from .app import DevModelApp
from .settings import DevModelSettings


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
