"""The page's dev sign-in (``GET /web/dev-signin``): under ``threadline up`` a browser on
this machine gets the dev token without pasting it; nobody else, and no other way."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_stream
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.services.cli.stack import PROVIDER_KEY_VARS, start_services
from threadline.services.gateway import create_app
from threadline.services.runtime.connect import read_dev_token
from threadline.services.runtime.natsserver import EmbeddedNats

SIGNIN = "/web/dev-signin"
REFUSED = (
    {"Host": "evil.example"},  # another name resolving here (DNS rebinding), a proxy
    {"Host": "evil.example:8000"},
    {"Host": "192.0.2.7"},
    {"Sec-Fetch-Site": "cross-site"},  # a page of another site
    {"Sec-Fetch-Site": "same-site"},
)


async def test_up_lets_a_browser_on_this_machine_sign_in(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in PROVIDER_KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in ("THREADLINE_TOKENS", "THREADLINE_JWT_SECRET", "THREADLINE_JWT_PUBLIC_KEY"):
        monkeypatch.delenv(var, raising=False)
    store = await JetStreamEventStore.connect(nats_server.url, fresh_stream(), heartbeat_s=0.5)
    settings = Settings(data_dir=str(tmp_path), port=0)
    try:
        async with contextlib.AsyncExitStack() as stack:
            url = (await start_services(stack, settings, store)).urls["gateway_url"]
            async with httpx.AsyncClient(base_url=url) as client:
                got = await client.get(SIGNIN)
                assert got.status_code == 200, got.text
                assert got.headers["cache-control"] == "no-store"
                token = got.json()["token"]
                assert token == read_dev_token(settings) and got.json()["owner"] == "dev"
                auth = {"Authorization": f"Bearer {token}"}
                assert (await client.get("/v1/sessions", headers=auth)).status_code == 200
                port = url.rsplit(":", 1)[1]
                for host in (f"localhost:{port}", "localhost", f"[::1]:{port}"):
                    assert (await client.get(SIGNIN, headers={"Host": host})).status_code == 200
                assert (
                    await client.get(SIGNIN, headers={"Sec-Fetch-Site": "same-origin"})
                ).status_code == 200
                for headers in REFUSED:
                    refused = await client.get(SIGNIN, headers=headers)
                    assert refused.status_code == 404, headers
                    assert token not in refused.text
    finally:
        await store.close()


async def test_no_dev_signin_when_auth_is_configured_or_from_another_machine() -> None:
    settings = Settings(tokens="real-token:alice")
    plain = create_app(settings, MemoryEventStore())  # `threadline gateway`, a deployment
    here = httpx.ASGITransport(plain, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=here, base_url="http://127.0.0.1") as client:
        assert (await client.get(SIGNIN)).status_code == 404
    allowed = create_app(
        Settings(tokens="dev-token-x:dev"), MemoryEventStore(), dev_signin="dev-token-x"
    )
    for address, status in (
        ("127.0.0.1", 200),
        ("::1", 200),
        ("192.0.2.7", 404),
        ("10.0.0.1", 404),
    ):
        transport = httpx.ASGITransport(allowed, client=(address, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            got = await client.get(SIGNIN)
            assert got.status_code == status, (address, got.text)
            assert ("dev-token-x" in got.text) == (status == 200)
