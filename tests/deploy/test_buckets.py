"""The key-value buckets beside the stream in a deployment (snapshots, the sessions
directory: events/kv.py), on real nats-servers running deploy/nats/: the admin made them
with the stream, and the real agent and gateway processes, each connected as its own
user over TLS, use them (no "bucket ... unavailable" in their logs); what a service
may not do to them: test_permissions.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.kv import KeyValue

from tests.agent.longsession import build_session
from tests.deploy.prodcluster import STREAM, ProdCluster, connect, service, until_terminal
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.kv import buckets
from threadline.events.schema import UserMessage
from threadline.events.snapshots import decode_snapshot
from threadline.events.store import NewEvent
from threadline.services.devmodel import DevModelSettings, serve
from threadline.services.runtime.cluster import LocalCluster

SNAPSHOTS, SESSIONS = (config.bucket for config in buckets(STREAM))
#: what the services log when they cannot use a bucket (events/kv.py, events/sessions.py,
#: services/gateway/store_history.py) or the server refuses them something
TROUBLE = ("unavailable", "snapshot not", "index lost", "permissions violation")


def comparable(config: StreamConfig) -> dict[str, object]:
    return {k: v for k, v in config.as_dict().items() if k not in {"name", "subjects"}}


async def test_admin_made_the_buckets_as_the_services_would(prod: ProdCluster) -> None:
    """deploy/nats/kv-*.json made the buckets the services bind (at R3); nats-py's own
    ``create_key_value`` makes the same stream from the services' bucket settings."""
    admin = await connect(prod, "admin")
    js = admin.jetstream()
    try:
        for config in buckets(STREAM):
            kv = await js.key_value(config.bucket)  # binds: it is a bucket
            made = (await kv.status()).stream_info
            assert made.config.num_replicas == 3 and made.config.storage == config.storage
            scratch = config.evolve(bucket=f"CHECK_{config.bucket}", replicas=3)
            await js.create_key_value(scratch)
            theirs = await js.stream_info(f"KV_{scratch.bucket}")
            await js.delete_key_value(scratch.bucket)
            assert comparable(made.config) == comparable(theirs.config)
    finally:
        await admin.close()


async def test_the_local_cluster_makes_the_buckets_at_the_streams_replicas(
    tmp_path: Path,
) -> None:
    """``threadline cluster`` makes the buckets with the stream, at R3: a service would
    make a missing one at R1, on one node, gone with that node."""
    async with LocalCluster(tmp_path, agents=0, gateways=0, projector=False) as cluster:
        nc = await nats.connect(cluster.nats_urls)
        try:
            for config in buckets(cluster.stream):
                kv = await nc.jetstream().key_value(config.bucket)
                assert (await kv.status()).stream_info.config.num_replicas == 3
        finally:
            await nc.close()


async def stored(kv: KeyValue, key: str, timeout_s: float = 30) -> bytes:
    """The value of ``key`` once it has one (a watch, not a poll)."""
    watcher = await kv.watch(key)
    try:
        async with asyncio.timeout(timeout_s):
            async for entry in watcher:
                if entry is not None and entry.value:
                    return entry.value
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    raise AssertionError(f"{key}: the watch ended")


@pytest.mark.usefixtures("ca_trusted")
async def test_services_keep_snapshots_and_the_sessions_directory(
    prod: ProdCluster, tmp_path: Path
) -> None:
    """A turn on a 241-event session, run by the agent as ``agent``, leaves the session's
    snapshot in the bucket; the gateway, as ``gateway``, writes one for a session it
    reads and lists an owner's sessions from the directory bucket."""
    admin_nc = await connect(prod, "admin")
    admin = JetStreamEventStore(admin_nc, STREAM)
    await build_session(admin, "kv-turn", 60)  # owner alice, 4 events a turn
    await build_session(admin, "kv-read", 60)
    gateway = await JetStreamEventStore.connect(prod.urls("gateway"), STREAM, timeout_s=3)
    (asked,) = await gateway.append(
        "kv-turn", NewEvent(event=UserMessage(text="one more"), turn="kv-t")
    )
    js = admin_nc.jetstream()
    async with serve(DevModelSettings.fast()) as devmodel, contextlib.AsyncExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env |= {"THREADLINE_DEVMODEL_URL": devmodel, "THREADLINE_TOKENS": "tok:alice"}
        agent, gw = service("agent", prod, env, tmp_path), service("gateway", prod, env, tmp_path)
        for svc in (agent, gw):
            stack.push_async_callback(svc.stop)
        await asyncio.gather(agent.start(), gw.start())
        async with asyncio.timeout(30):
            kinds = [r.kind async for r in until_terminal(gateway, "kv-turn", after=asked.position)]
        assert kinds[-1] == "turn_completed"
        snapshots = await js.key_value(SNAPSHOTS)
        snap = decode_snapshot("kv-turn", await stored(snapshots, "kv-turn"))
        assert snap is not None and snap.version >= asked.version  # folded for the turn

        base = gw.ready_line.split(" on ", 1)[1].split()[0]
        auth = {"Authorization": "Bearer tok"}
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as client:
            read = await client.get("/v1/sessions/kv-read")
            assert read.status_code == 200, read.text
            snap = decode_snapshot("kv-read", await stored(snapshots, "kv-read"))
            assert snap is not None and snap.version == 241
            assert (await client.get("/v1/sessions/kv-turn")).status_code == 200
            made = (await client.post("/v1/sessions", json={"provider": "dev"})).json()
            listed = await client.get("/v1/sessions", params={"wait_for": made["position"]})
            assert listed.status_code == 200, listed.text
        ids = {s["id"] for s in listed.json()["sessions"]}
        assert {"kv-turn", "kv-read", made["id"]} <= ids
        directory = await js.key_value(SESSIONS)
        assert int(await stored(directory, "checkpoint")) > 0
    await gateway.close()
    await admin_nc.close()
    for svc in (agent, gw):
        lines = svc.log_path.read_text().splitlines()
        assert not [line for line in lines if any(t in line.lower() for t in TROUBLE)]
