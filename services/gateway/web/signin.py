"""``GET /web/dev-signin``: the dev token for the web page, under ``threadline up`` only.

``up`` makes a single-user dev token when no token or JWT key is configured
(:func:`~threadline.services.gateway.auth.ensure_dev_token`) and tells the gateway it
may hand it to the page (``create_app(dev_signin=token)``); ``threadline gateway`` and
every deployment never do, and there the route answers 404 like any unknown path.

Even then it answers only a request that could come from a person at this machine's
browser on this page: from a loopback address, to a loopback host name (``localhost``,
``127.0.0.1``, ``[::1]``: a page of another site whose name resolves to 127.0.0.1, DNS
rebinding, or a reverse proxy forwarding its public name, is refused), and not sent by
another site (``Sec-Fetch-Site``, when the browser sends it, must be ``same-origin`` or
``none``). The gateway sends no CORS headers, so another origin cannot read the
answer either. What remains: any program of any user on this machine can ask, just as
it could read ``.threadline/dev-token`` where ``up`` keeps it; so ``up`` is for one
person's machine (docs/web.md).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

import msgspec
from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

from threadline.services.gateway.context import GW

DEV_SIGNIN: Final = "/web/dev-signin"
#: host names a browser on this machine uses for a gateway on a loopback interface
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})


class DevSignin(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    owner: str


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def local_browser(request: Request[Any, Any, Any]) -> bool:
    """Whether a request comes from this machine, to a loopback name, not from another site."""
    client = request.client.host if request.client else None
    host = request.headers.get("host", "").lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    site = request.headers.get("sec-fetch-site", "same-origin")
    return _loopback(client) and name in LOOPBACK_HOSTS and site in ("same-origin", "none")


@get(DEV_SIGNIN, include_in_schema=False)
async def dev_signin(request: Request[Any, Any, Any], gw: GW) -> Response[DevSignin]:
    token = gw.dev_signin
    if token is None or not local_browser(request):
        raise NotFoundException  # the very answer of a path the app does not serve
    body = DevSignin(token=token, owner=gw.auth.authenticate(f"Bearer {token}").owner)
    return Response(body, headers={"Cache-Control": "no-store"})
