"""The gateway: how clients reach Threadline (REST, Server-Sent Events, OpenAPI).

``create_app(settings, store)`` builds the Litestar app; ``serve_gateway(...)`` runs it
in-process on uvicorn; ``threadline gateway`` runs it alone. See docs/gateway.md.
"""

from threadline.services.commands.catalog import Catalog, ProviderEntry
from threadline.services.gateway.app import create_app, gateway_of
from threadline.services.gateway.auth import ensure_dev_token
from threadline.services.gateway.context import Gateway
from threadline.services.gateway.options import GatewayOptions, JwtOptions, RateOptions
from threadline.services.gateway.server import serve_app, serve_gateway

__all__ = [
    "Catalog",
    "Gateway",
    "GatewayOptions",
    "JwtOptions",
    "ProviderEntry",
    "RateOptions",
    "create_app",
    "ensure_dev_token",
    "gateway_of",
    "serve_app",
    "serve_gateway",
]
