"""Cross-origin calls from browsers (CORS): which other origins' pages may call the API.

A front end served from another origin than the gateway (a React app on
``https://app.example.com`` using ``useChat``, say) needs the gateway's permission to
call it: the browser first asks with a preflight ``OPTIONS`` and only sends the real
request when the answer names its origin. Allowed origins are listed in
``GatewayOptions.cors_origins`` (``THREADLINE_GATEWAY_CORS_ORIGINS``); none by default,
so only the gateway's own page (same origin) can call it from a browser.

The permission covers what ``/v1`` and ``/api`` clients send (``Authorization``, JSON
bodies, ``Last-Event-ID``, ``Idempotency-Key``) and lets them read the headers our
answers carry (the chat's session, the stream protocol, ``Retry-After``...). Bearer
tokens, not cookies, authenticate: no credentials mode. Litestar applies it to every
route; the ones outside ``/v1`` and ``/api`` are public anyway.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from litestar.config.cors import CORSConfig

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
