"""CORS over real HTTP: a page of an allowed origin may call ``/v1`` and ``/api`` (and
nothing else); others, and every origin when none is configured (the default), get no
``Access-Control-*``.

A real browser calling the gateway from another origin: tests/aisdk/test_example_app.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.gateway.harness import Harness, gateway_options, running_gateway
from threadline.base.errors import ConfigurationError
from threadline.services.gateway import GatewayOptions
from threadline.services.gateway.cors import METHODS, cors_config
from threadline.services.runtime.natsserver import EmbeddedNats

APP = "https://app.example.com"
OTHER = "https://evil.example.net"
ASKED = "authorization,content-type,last-event-id"


@pytest_asyncio.fixture(scope="module")
async def cors(nats_server: EmbeddedNats) -> AsyncIterator[Harness]:
    options = gateway_options(cors_origins=(APP, "http://localhost:*"))
    async with running_gateway(nats_server.url, options) as harness:
        yield harness


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": ASKED,
    }


def allowed(resp: httpx.Response) -> set[str]:
    named = resp.headers.get("access-control-allow-headers", "")
    return {h.strip().lower() for h in named.split(",")}


async def test_preflight_names_an_allowed_origin(cors: Harness) -> None:
    anonymous = cors.client(None)  # a preflight carries no token
    for path, method in (
        ("/api/chat", "POST"),
        ("/api/chat/c1/stream", "GET"),
        ("/api/chat/c1/cancel", "POST"),
        ("/v1/sessions", "POST"),
        ("/v1/sessions/s1/cancel", "POST"),
        ("/v1/sessions/s1", "PATCH"),
    ):
        for origin in (APP, "http://localhost:5173"):
            resp = await anonymous.options(path, headers=preflight(origin, method))
            assert resp.status_code == 204, (path, resp.text)
            assert resp.headers["access-control-allow-origin"] == origin
            assert method in resp.headers["access-control-allow-methods"]
            assert set(ASKED.split(",")) <= allowed(resp)
            assert "origin" in resp.headers["vary"].lower()
            assert "access-control-allow-credentials" not in resp.headers


async def test_preflight_of_another_origin_is_refused(cors: Harness) -> None:
    anonymous = cors.client(None)
    for origin in (OTHER, "https://app.example.com.evil.net", "http://app.example.com"):
        resp = await anonymous.options("/api/chat", headers=preflight(origin))
        assert resp.status_code == 400
        assert "access-control-allow-origin" not in resp.headers
    # a header nobody allowed
    asking = {**preflight(APP), "Access-Control-Request-Headers": "x-secret"}
    resp = await anonymous.options("/api/chat", headers=asking)
    assert resp.status_code == 400 and "access-control-allow-origin" not in resp.headers


async def test_actual_requests_expose_what_clients_read(cors: Harness) -> None:
    alice = cors.client("alice-token")
    listed = await alice.get("/v1/sessions", headers={"Origin": APP})
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == APP
    exposed = {h.strip() for h in listed.headers["access-control-expose-headers"].split(",")}
    assert {"x-threadline-session", "x-vercel-ai-ui-message-stream", "retry-after"} <= exposed
    # errors too, so the page can tell a 401 from a network failure
    refused = await cors.client(None).get("/v1/sessions", headers={"Origin": APP})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == APP
    # the AI SDK's stream: the browser may read it and the chat's session
    chat = {
        "id": "cors-chat",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
    }
    async with alice.stream("POST", "/api/chat", json=chat, headers={"Origin": APP}) as resp:
        assert resp.status_code == 200
        assert resp.headers["access-control-allow-origin"] == APP
        assert resp.headers["x-threadline-session"].startswith("ai-")
    other = await alice.get("/v1/sessions", headers={"Origin": OTHER})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


async def test_no_origin_is_allowed_by_default(gw: Harness) -> None:
    for path in ("/api/chat", "/v1/sessions"):
        resp = await gw.client(None).options(path, headers=preflight(APP))
        assert not cors_headers(resp), resp.headers
    resp = await gw.alice.get("/v1/sessions", headers={"Origin": APP})
    assert resp.status_code == 200 and not cors_headers(resp)


def cors_headers(resp: httpx.Response) -> list[str]:
    return [h for h in resp.headers if h.startswith("access-control-")]


async def test_only_the_api_is_open_to_other_origins(cors: Harness) -> None:
    """The page's routes (``/web/dev-signin`` hands out ``up``'s dev token on loopback)
    and the public ones never get CORS headers, even for an allowed origin."""
    anonymous = cors.client(None)
    for path in ("/", "/web/dev-signin", "/web/app.js", "/healthz", "/metrics", "/schema"):
        resp = await anonymous.get(path, headers={"Origin": APP})
        assert not cors_headers(resp), (path, resp.headers)
        asked = await anonymous.options(path, headers=preflight(APP, "GET"))
        assert not cors_headers(asked), (path, asked.headers)


def test_every_method_the_app_serves_is_allowed(cors: Harness) -> None:
    served = {m for route in cors.app.routes for m in getattr(route, "methods", ())}
    assert served - {"HEAD"} <= set(METHODS)


def test_origins_from_the_environment() -> None:
    env = {"THREADLINE_GATEWAY_CORS_ORIGINS": f" {APP}, http://localhost:5173 ,"}
    assert GatewayOptions.from_env(env).cors_origins == (APP, "http://localhost:5173")
    assert GatewayOptions.from_env({}).cors_origins == ()
    assert cors_config(()) is None
    for bad in (f"{APP}/", "app.example.com", f"{APP}/chat"):
        with pytest.raises(ConfigurationError, match="not an origin"):
            cors_config((bad,))
