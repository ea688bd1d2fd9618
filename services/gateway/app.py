"""The Litestar application: routes, auth, limits, error translation, OpenAPI, metrics.

Extension points for later routes (the AI SDK stream endpoint, the web page): add
handlers to :data:`V1_ROUTES` (authenticated, under ``/v1``) or :data:`PUBLIC_ROUTES`,
or pass ``extra_routes`` (authenticated); handlers receive the
:class:`~threadline.services.gateway.context.Gateway` by declaring ``gw: GW`` and the
caller by declaring ``principal: Caller``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.types import ControllerRouterHandler

from threadline.base.config import Settings
from threadline.events.store import EventStore
from threadline.services.commands.catalog import Catalog
from threadline.services.gateway.aisdk import AISDK_ROUTES
from threadline.services.gateway.auth import BearerAuthMiddleware
from threadline.services.gateway.context import Gateway, principal_of
from threadline.services.gateway.cors import CORSMiddleware, cors_config
from threadline.services.gateway.errors import exception_handler
from threadline.services.gateway.history import HistoryReader
from threadline.services.gateway.openapi import BEARER, openapi_config, tighten
from threadline.services.gateway.options import GatewayOptions
from threadline.services.gateway.ratelimit import CommandRateLimit
from threadline.services.gateway.routes import admin, events, messages, meta, sessions, usage
from threadline.services.gateway.web import ROUTES as WEB_ROUTES

V1_ROUTES: tuple[ControllerRouterHandler, ...] = (
    sessions.sessions_options,  # first: see its docstring
    sessions.create_session,
    sessions.list_sessions,
    sessions.session_options,  # before its GET and PATCH, as above
    sessions.get_session,
    sessions.rename_session,
    messages.post_message,
    messages.cancel_turn,
    messages.retry_turn,
    messages.answer_approval,
    events.stream_events,
    events.export_session,
    events.verify_chain,
    meta.list_providers,
    sessions.fork,
    usage.get_usage,
    admin.erase_content,
)
PUBLIC_ROUTES: tuple[ControllerRouterHandler, ...] = (
    meta.healthz,
    meta.readyz,
    meta.metrics,
    *WEB_ROUTES,
)


def create_app(
    settings: Settings,
    store: EventStore,
    *,
    history: HistoryReader | None = None,
    catalog: Catalog | None = None,
    options: GatewayOptions | None = None,
    extra_routes: Sequence[ControllerRouterHandler] = (),
    dev_signin: str | None = None,
) -> Litestar:
    """The gateway app. ``history`` defaults to views folded from the store; ``catalog``
    to the providers and MCP servers in ``settings``; ``options`` to the environment.
    ``dev_signin``: a token the web page may fetch from this machine (``threadline up``'s
    dev token; see web/signin.py)."""
    options = options or GatewayOptions.from_env()
    gateway = Gateway(
        settings,
        store,
        options=options,
        catalog=catalog or Catalog.from_settings(settings),
        history=history,
        dev_signin=dev_signin,
    )
    # /v1 and /api take the bearer token; commands (every POST) are then rate limited per owner
    middleware = [
        DefineMiddleware(BearerAuthMiddleware, authenticator=gateway.auth),
        DefineMiddleware(CommandRateLimit, limiter=gateway.rate),
    ]
    authenticated = [
        Router(path=path, route_handlers=routes, middleware=middleware, security=[{BEARER: []}])
        for path, routes in (("/v1", [*V1_ROUTES, *extra_routes]), ("/api", [*AISDK_ROUTES]))
    ]

    handlers: dict[Any, Any] = {Exception: exception_handler}
    app = Litestar(
        route_handlers=[*authenticated, *PUBLIC_ROUTES],
        dependencies={
            "gw": Provide(lambda: gateway, sync_to_thread=False),
            "principal": Provide(principal_of, sync_to_thread=False),
        },
        exception_handlers=handlers,
        middleware=[gateway.metrics.middleware],
        request_max_body_size=options.max_body_bytes,
        on_startup=[gateway.start],
        on_shutdown=[gateway.close],
        state=State({"gateway": gateway}),
        openapi_config=openapi_config(),
        logging_config=None,
        debug=False,
    )
    tighten(app)
    if allowed := cors_config(options.cors_origins):  # only for /v1 and /api: cors.py
        app.asgi_handler = CORSMiddleware(app.asgi_handler, allowed)
    return app


def gateway_of(app: Litestar) -> Gateway:
    """The :class:`Gateway` behind an app made by :func:`create_app`."""
    gateway = app.state["gateway"]
    assert isinstance(gateway, Gateway)
    return gateway
