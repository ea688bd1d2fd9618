"""Providers, health, readiness and metrics."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Response, get
from litestar.openapi.datastructures import ResponseSpec

from threadline.base.errors import StoreUnavailable, ThreadlineError
from threadline.base.metrics import MEDIA_TYPE
from threadline.events.kv import KVSnapshots, snapshot_store_for
from threadline.events.readiness import (
    APPENDS,
    appended,
    appends_failed_lately,
    config_checked,
    problems,
)
from threadline.events.store import EventStore
from threadline.services.gateway.context import GW
from threadline.services.gateway.errors import error_responses
from threadline.services.gateway.models import Health, ProviderList

_READY_TIMEOUT_S = 2.0
#: the key written to see whether writes land again (never a session id: it has a dot)
_PROBE_KEY = "readiness.probe"


@get(
    "/providers",
    summary="Providers and models",
    description="What a session may name: providers with their models (never keys or "
    "URLs) and the MCP tool servers.",
    responses=error_responses(401),
)
async def list_providers(gw: GW) -> ProviderList:
    return msgspec.convert(gw.catalog, ProviderList, from_attributes=True)


@get("/healthz", summary="Liveness", description="The process is serving requests.")
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    summary="Readiness",
    description="NATS is reachable, the event stream exists and nothing this process "
    "relies on is known to be broken: the agents' work queue consumer exists (when an "
    "agent runs in this process), appends are accepted and the stream's configuration is "
    "what Threadline created (503 otherwise, with the "
    "failing checks).",
    responses={
        503: ResponseSpec(data_container=Health, description="Not ready", generate_examples=False)
    },
)
async def readyz(gw: GW) -> Response[Health]:
    try:
        async with asyncio.timeout(_READY_TIMEOUT_S):
            checks = await config_checked(gw.store)
            position = await gw.store.last_position()
            if APPENDS in checks and await _appends_work(gw.store):
                del checks[APPENDS]
    except (ThreadlineError, TimeoutError) as exc:
        checks = dict(problems(gw.store))
        checks["event_log"] = "timeout" if isinstance(exc, TimeoutError) else "unreachable"
        return Response(Health(status="unavailable", checks=checks), status_code=503)
    ready = not checks
    checks.update(event_log="ok", last_position=str(position))
    health = Health(status="ok" if ready else "unavailable", checks=checks)
    return Response(health, status_code=200 if ready else 503)


@get(
    "/metrics",
    summary="Prometheus metrics",
    description="Text exposition format: the gateway's metrics and those of the other "
    "services in this process (agent, projector). Not authenticated: no owners, sessions "
    "or tokens appear in it.",
    media_type=MEDIA_TYPE,  # Litestar adds "; charset=utf-8" to text/*
)
async def metrics(gw: GW) -> str:
    return await gw.metrics.render_all(gw.hub.upstreams)


async def _appends_work(store: EventStore) -> bool:
    """The last append failed: does a write land now, though nothing else appends? A
    small value in the snapshot bucket beside the stream (the same server, account and
    disk) stands in for an append. Where that bucket cannot be opened (a NATS user
    without the permission), the failure holds for a while (:data:`APPENDS_HOLD_S`)."""
    snapshots = snapshot_store_for(store)
    try:
        if not isinstance(snapshots, KVSnapshots):
            raise StoreUnavailable("no snapshot bucket")
        await snapshots.bucket.kv()
    except StoreUnavailable:
        return not appends_failed_lately(store)
    try:
        await snapshots.save(_PROBE_KEY, b"")
    except StoreUnavailable:
        return False
    appended(store, None)
    return True
