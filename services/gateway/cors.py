"""Cross-origin calls from browsers (CORS): which other origins' pages may call the API.

A front end served from another origin than the gateway (a React app on
``https://app.example.com`` using ``useChat``, say) needs the gateway's permission to
call it: the browser first asks with a preflight ``OPTIONS`` and only sends the real
request when the answer names its origin. Allowed origins are listed in
``GatewayOptions.cors_origins`` (``THREADLINE_GATEWAY_CORS_ORIGINS``); none by default,
so only the gateway's own page (same origin) can call it from a browser.

The permission covers ``/v1`` and ``/api`` only: what their clients send
(``Authorization``, JSON bodies, ``Last-Event-ID``, ``Idempotency-Key``) and the headers
their answers carry (the chat's session, the stream protocol, ``Retry-After``...). The
page's routes never get CORS headers (``/web/dev-signin`` relies on that). Bearer
tokens, not cookies, authenticate: no credentials mode. Litestar's ``CORSConfig``
holds the settings; its middleware applies to every route, so this one does the
applying, for the API's paths.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from litestar.config.cors import CORSConfig
from litestar.constants import DEFAULT_ALLOWED_CORS_HEADERS
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

from threadline.base.errors import ConfigurationError

#: request headers a cross-origin caller may send (besides the CORS-safelisted ones)
ALLOW_HEADERS: Final = ("authorization", "content-type", "last-event-id", "idempotency-key")
#: response headers a cross-origin caller may read (besides the CORS-safelisted ones)
EXPOSE_HEADERS: Final = (
    "x-threadline-session",  # the session of an AI SDK chat (aisdk/stream.py)
    "x-vercel-ai-ui-message-stream",
    "retry-after",
    "www-authenticate",
    "content-disposition",
)
#: every method the API serves (tests/gateway/test_cors.py checks against the app)
METHODS: Final = ("GET", "POST", "PATCH", "OPTIONS")
#: the paths the permission covers
API_PATHS: Final = re.compile(r"^/(v1|api)(/|$)")
#: ``scheme://host[:port]``, as browsers send it in ``Origin`` (no path, no trailing /);
#: ``*`` alone allows every origin, and ``*`` inside one matches anything there
_ORIGIN: Final = re.compile(r"^\*$|^https?://[^/\s]+$")


def cors_config(origins: Sequence[str]) -> CORSConfig | None:
    """The CORS settings for ``origins`` (None: no origin but the gateway's own)."""
    if not origins:
        return None
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigurationError(
                f"THREADLINE_GATEWAY_CORS_ORIGINS: {origin!r} is not an origin "
                "(scheme://host[:port], no path or trailing slash)"
            )
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=list(METHODS),
        allow_headers=list(ALLOW_HEADERS),
        expose_headers=list(EXPOSE_HEADERS),
        allow_credentials=False,
        max_age=600,
    )


class CORSMiddleware:
    """Answers preflights to the API's paths and marks the API's answers to an allowed
    origin, errors included: it wraps the app's ASGI handler, outside routing,
    authentication and error handling (where Litestar puts its own)."""

    def __init__(self, app: ASGIApp, config: CORSConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = Headers.from_scope(scope)
        origin = headers.get("origin")
        if not origin or not API_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
        elif scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, headers, send)
        elif self.config.is_origin_allowed(origin):
            await self.app(scope, receive, self._marked(send, origin))
        else:
            await self.app(scope, receive, send)

    def _allow_origin(self, origin: str) -> dict[str, str]:
        if self.config.is_allow_all_origins:
            return {"Access-Control-Allow-Origin": "*"}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    async def _preflight(self, origin: str, headers: Headers, send: Send) -> None:
        """204 naming the origin, or 400 without any ``Access-Control-*`` header."""
        method = headers.get("access-control-request-method", "")
        asked = headers.get("access-control-request-headers", "")
        allowed = {*self.config.allow_headers, *(h.lower() for h in DEFAULT_ALLOWED_CORS_HEADERS)}
        ok = (
            self.config.is_origin_allowed(origin)
            and method in self.config.allow_methods
            and all(h.strip().lower() in allowed for h in asked.split(",") if h.strip())
        )
        answer = {**self.config.preflight_headers, **self._allow_origin(origin)} if ok else {}
        body = b"" if ok else b"CORS request refused"
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 204 if ok else 400,
            "headers": [(k.lower().encode(), v.encode()) for k, v in answer.items()],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _marked(self, send: Send, origin: str) -> Send:
        extra = {**self._allow_origin(origin), **self.config.simple_headers}

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableScopeHeaders.from_message(message).update(extra)
            await send(message)

        return marked
