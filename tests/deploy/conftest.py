"""One production-configured cluster for the deployment tests (started once)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.deploy.prodcluster import CONF, ProdCluster, connect, prod_cluster


@pytest.fixture(scope="session")
async def prod(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProdCluster]:
    async with prod_cluster(tmp_path_factory.mktemp("prod")) as cluster:
        admin = await connect(cluster, "admin")
        try:  # what the stream job does once: `nats stream add --config` for each file
            for path in sorted(CONF.parent.glob("*.json")):
                name = json.loads(path.read_bytes())["name"]
                reply = await admin.request(
                    f"$JS.API.STREAM.CREATE.{name}", path.read_bytes(), timeout=10
                )
                assert "error" not in json.loads(reply.data), reply.data
        finally:
            await admin.close()
        yield cluster


@pytest.fixture
def ca_trusted(prod: ProdCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Services trust the cluster's CA the way a container does: ``SSL_CERT_FILE``."""
    monkeypatch.setenv("SSL_CERT_FILE", str(prod.ca))
