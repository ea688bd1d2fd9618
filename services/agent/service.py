"""Compose the agent from configuration: providers, MCP tools, the worker.

``serve_agent`` runs the worker in the background of the calling process (``threadline
up``, ``threadline agent``, tests) and stops it cleanly, letting running turns finish
or handing them back to the stream for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final

import msgspec

from threadline.base.config import Settings
from threadline.base.errors import ConfigurationError
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.jetstream_queue import JetStreamWorkQueue
from threadline.events.kv import snapshot_store_for
from threadline.events.sessions import SessionCache
from threadline.events.store import EventStore
from threadline.events.workqueue import WORK_KINDS, MemoryWorkQueue, WorkQueue
from threadline.services.agent.approvals import ApprovalRules
from threadline.services.agent.deadlines import KINDS as DEADLINE_KINDS
from threadline.services.agent.deadlines import QUEUE_NAME as DEADLINES
from threadline.services.agent.providers import ModelAdapter, adapter_for, load_providers
from threadline.services.agent.providers.settings import ProviderRegistry
from threadline.services.agent.telemetry import AgentTelemetry
from threadline.services.agent.tools import McpServerConfig, ToolRegistry
from threadline.services.agent.turn import AgentDeps, AgentSettings
from threadline.services.agent.worker import AgentWorker

#: the agents' work queue (on JetStream: the durable consumer every worker shares)
QUEUE_NAME: Final = "threadline-agent"


def mcp_configs(settings: Settings) -> list[McpServerConfig]:
    """The configured MCP servers; by default the bundled ``threadline`` server over stdio."""
    raw: Mapping[str, object] = settings.mcp_servers or {
        "threadline": {
            "transport": "stdio",
            "command": [
                sys.executable, "-m", "threadline.services.mcpserver", "--transport", "stdio",
                "--no-test-tools", "--data-dir", str(settings.data_path / "mcp"),
            ],
        }
    }  # fmt: skip
    configs = []
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigurationError(f"mcp_servers.{name} must be a table")
        try:
            configs.append(msgspec.convert({"name": name, **table}, McpServerConfig))
        except msgspec.ValidationError as exc:
            raise ConfigurationError(f"mcp_servers.{name}: {exc}") from None
    return configs


def deployment_providers(
    settings: Settings, devmodel_url: str | None = None, env: Mapping[str, str] | None = None
) -> ProviderRegistry:
    """The providers of this deployment (the agent's, and what the gateway offers): from
    ``env`` (default the process's), the config file, and the dev model at ``devmodel_url``."""
    environ = dict(os.environ if env is None else env)
    if devmodel_url:
        environ.setdefault("THREADLINE_DEVMODEL_URL", devmodel_url)
    return load_providers(environ, settings.providers)


class Adapters:
    """One adapter (and HTTP connection pool) per provider, made on first use."""

    def __init__(self, registry: ProviderRegistry) -> None:
        self._registry = registry
        self._adapters: dict[str, ModelAdapter] = {}

    def __call__(self, provider: str) -> ModelAdapter:
        adapter = self._adapters.get(provider)
        if adapter is None:
            adapter = self._adapters[provider] = adapter_for(self._registry.get(provider))
        return adapter

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()


def work_queue_for(
    store: EventStore,
    *,
    ack_wait_s: float,
    max_ack_pending: int,
    name: str = QUEUE_NAME,
    kinds: Sequence[str] = WORK_KINDS,
) -> WorkQueue:
    """The agents' queue on ``store`` (or another of ``name`` for ``kinds``): the
    JetStream consumer, or one in memory."""
    if isinstance(store, JetStreamEventStore):
        return JetStreamWorkQueue(
            store, name=name, ack_wait_s=ack_wait_s, max_ack_pending=max_ack_pending, kinds=kinds
        )
    return MemoryWorkQueue(
        store, name=name, ack_wait_s=ack_wait_s, max_ack_pending=max_ack_pending, kinds=kinds
    )


@contextlib.asynccontextmanager
async def serve_agent(
    settings: Settings,
    store: EventStore,
    *,
    devmodel_url: str | None = None,
    agent: AgentSettings | None = None,
    concurrency: int = 500,
    ack_wait_s: float = 30.0,
    env: Mapping[str, str] | None = None,
    telemetry: AgentTelemetry | None = None,
    queue: WorkQueue | None = None,
) -> AsyncIterator[AgentWorker]:
    """``telemetry``: where metrics and spans go (default: the process's registry and
    tracer); ``queue``: where the work comes from (default: :func:`work_queue_for`)."""
    queue = queue or work_queue_for(store, ack_wait_s=ack_wait_s, max_ack_pending=concurrency * 2)
    providers = deployment_providers(settings, devmodel_url, env)
    adapters = Adapters(providers)
    async with ToolRegistry(mcp_configs(settings)) as tools:
        deps = AgentDeps(
            store=store, providers=providers, adapter=adapters, tools=tools,
            settings=agent or AgentSettings.of(settings),
            telemetry=telemetry or AgentTelemetry(), approvals=ApprovalRules(settings.mcp_servers),
        )  # fmt: skip
        sessions = SessionCache(store, snapshots=snapshot_store_for(store))
        await sessions.open()
        # approvals waiting for a person: as many as there are, each held by the server only
        deadlines = work_queue_for(
            store, ack_wait_s=30.0, max_ack_pending=1_000_000, name=DEADLINES, kinds=DEADLINE_KINDS
        )
        worker = AgentWorker(
            store, queue, deps, concurrency=concurrency, sessions=sessions, deadlines=deadlines
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        unwatch = deps.telemetry.watch_consumer(queue)
        try:
            yield worker
        finally:
            unwatch()
            stop.set()
            await task
            await sessions.close()
            await adapters.aclose()
