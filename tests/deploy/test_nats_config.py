"""``deploy/nats/``: the files are what the harness's renderer produces, and three real
nats-servers running them (ports and paths substituted, TLS on, passwords from the
environment) let admin create the stream at R3 and let each service do its job with
its own user. What the users may not do: test_permissions.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import httpx
import pytest

from tests.deploy.prodcluster import CONF, STREAM, ProdCluster, connect, service, until_terminal
from threadline.base.config import Settings, StreamSettings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS, SessionStarted, UserMessage
from threadline.events.store import NewEvent
from threadline.events.stream import stream_config, stream_problems
from threadline.projections import serve_projector
from threadline.services.devmodel import DevModelSettings, serve
from threadline.services.runtime.cluster import LocalCluster, gateway_module
from threadline.services.runtime.natsconf import (
    CLUSTER_NAME,
    NodeConfig,
    production_buckets,
    production_config,
    production_stream,
    production_stream_json,
    render_node,
)


def test_checked_in_files_are_what_the_renderer_produces() -> None:
    regenerate = "python -m threadline.services.runtime.natsconf [FILE] > deploy/nats/FILE"
    assert CONF.read_text() == production_config(), regenerate
    assert (CONF.parent / "stream.json").read_text() == production_stream_json(), regenerate
    buckets = production_buckets()
    assert {p.name for p in CONF.parent.glob("kv-*.json")} == set(buckets), regenerate
    for name, text in buckets.items():
        assert (CONF.parent / name).read_text() == text, regenerate


def test_harness_and_production_share_the_durability_settings(tmp_path: Path) -> None:
    local = render_node(NodeConfig(name="n", store_dir=None, routes=["nats-route://h:1"]))
    for text in (local, production_config()):
        assert "sync_interval: always" in text and f"name: {CLUSTER_NAME}" in text
    assert production_stream()["num_replicas"] == 3
    assert LocalCluster(tmp_path, agents=0, gateways=0, projector=False).stream.replicas == 3
    assert production_stream() == dict(
        sorted(stream_config(StreamSettings(replicas=3)).as_dict().items())
    )


async def test_admin_created_the_stream_at_r3_with_safe_settings(prod: ProdCluster) -> None:
    admin = await connect(prod, "admin")
    info = await admin.jetstream().stream_info(STREAM.name)
    await admin.close()
    assert info.config.num_replicas == 3
    assert info.cluster is not None and len(info.cluster.replicas or []) == 2
    assert stream_problems(info.config, STREAM) == []


@pytest.mark.usefixtures("ca_trusted")
async def test_each_service_does_its_job_with_its_own_user(
    prod: ProdCluster, tmp_path: Path
) -> None:
    """The real agent and gateway processes and the projector, each connected as its own
    user over TLS: a turn with a tool call, a session driven over HTTP and SSE."""
    gateway = await JetStreamEventStore.connect(prod.urls("gateway"), STREAM, timeout_s=3)
    projector_store = await JetStreamEventStore.connect(prod.urls("projector"), STREAM)
    started = SessionStarted(owner="o", provider="dev", tool_servers=("threadline",))
    await gateway.append("d1", NewEvent(event=started))
    text = 'hi [[tool:echo {"text": "deployed"}]]'
    await gateway.append("d1", NewEvent(event=UserMessage(text=text), turn="d1-t1"))
    async with serve(DevModelSettings.fast()) as devmodel, contextlib.AsyncExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env |= {"THREADLINE_DEVMODEL_URL": devmodel, "THREADLINE_TOKENS": "tok:o"}
        services = [service("agent", prod, env, tmp_path)]
        if gateway_module() is not None:
            services.append(service("gateway", prod, env, tmp_path))
        for svc in services:
            stack.push_async_callback(svc.stop)
        await asyncio.gather(*(svc.start() for svc in services))
        async with asyncio.timeout(30):
            kinds = [r.kind async for r in until_terminal(gateway, "d1")]
            assert kinds[-1] == "turn_completed" and "tool_result" in kinds
            if len(services) == 2:
                assert await turn_over_http(services[1].ready_line) == "turn_completed"
    settings = Settings(data_dir=str(tmp_path / "views"))
    async with serve_projector(settings, projector_store) as projector:
        assert await projector.wait(None, await projector_store.last_position(), timeout=20)
    await projector_store.close()
    await gateway.close()


async def turn_over_http(ready_line: str) -> str:
    """Create a session and send a message through the gateway; the terminal event's kind
    as its SSE stream shows it."""
    base = ready_line.split(" on ", 1)[1].split()[0]
    auth = {"Authorization": "Bearer tok"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as client:
        session = (await client.post("/v1/sessions", json={"provider": "dev"})).json()["id"]
        sent = await client.post(f"/v1/sessions/{session}/messages", json={"text": "hello"})
        assert sent.status_code == 202, sent.text
        async with client.stream("GET", f"/v1/sessions/{session}/events") as events:
            async for line in events.aiter_lines():
                kind = line.removeprefix("event:").strip()
                if line.startswith("event:") and kind in TERMINAL_KINDS:
                    return kind
    return "no terminal event"
