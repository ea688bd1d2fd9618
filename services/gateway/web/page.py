"""Routes for the web pages: ``GET /`` (the chat), ``GET /debug`` (the replay debugger:
docs/debugger.md) and their assets under ``/web/`` (every ``.js`` and
``.css`` file of this package's folder and of ``vendor/``, the pinned front-end libraries
with their licences: docs/web.md); and ReDoc's bundle, which the schema page
(``/schema``) loads from here.

The files are read once, at import. Every response carries a strict
Content-Security-Policy (scripts, styles and connections from this origin only; no
inline script, no framing, no form submission, no external anything), ``nosniff``, no
referrer, and an ETag so browsers revalidate instead of downloading again.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any, Final

from litestar import Request, Response, get
from litestar.types import ControllerRouterHandler

from threadline.services.gateway.openapi import REDOC_JS
from threadline.services.gateway.web.signin import dev_signin

CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


MEDIA_TYPES: Final = {".js": "text/javascript", ".css": "text/css"}


class Asset:
    def __init__(self, name: str, media_type: str) -> None:
        self.body = resources.files(__package__).joinpath(name).read_bytes()
        self.media_type = media_type
        self.etag = f'"{hashlib.sha256(self.body).hexdigest()[:20]}"'

    def response(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": self.etag}
        if request.headers.get("if-none-match") == self.etag:
            return Response(b"", status_code=304, headers=headers, media_type=self.media_type)
        return Response(self.body, headers=headers, media_type=self.media_type)


def _assets() -> dict[str, Asset]:
    """``/web/<name>`` for every script and style sheet here and in ``vendor/``."""
    root = resources.files(__package__)
    found: dict[str, Asset] = {}
    for folder in ("", "vendor/"):
        for item in (root / folder if folder else root).iterdir():
            suffix = "." + item.name.rpartition(".")[2]
            if item.is_file() and suffix in MEDIA_TYPES and item.name != "redoc.standalone.js":
                found[f"/web/{folder}{item.name}"] = Asset(folder + item.name, MEDIA_TYPES[suffix])
    return found


#: the pages, their scripts and style sheets, and ReDoc's bundle, by path
ASSETS: Final = {
    "/": Asset("index.html", "text/html"),
    "/debug": Asset("debug.html", "text/html"),
    **_assets(),
    REDOC_JS: Asset("redoc.standalone.js", "text/javascript"),
}


@get(list(ASSETS), include_in_schema=False)
async def asset(request: Request[Any, Any, Any]) -> Response[bytes]:
    return ASSETS[request.url.path].response(request)


ROUTES: Final[tuple[ControllerRouterHandler, ...]] = (asset, dev_signin)
