"""What ``threadline up`` runs: the services in order (each later service adds itself
here), and the catalog a deployment offers sessions.

This is the wiring of the service packages, so it sits at the top, in the CLI;
``threadline.services.runtime`` below holds the process plumbing the services share."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from threadline.base.config import Settings
from threadline.events.checkpointer import running_checkpointer
from threadline.events.jetstream import JetStreamEventStore
from threadline.projections import serve_projector
from threadline.services.agent.providers._config import PROVIDER_VARS
from threadline.services.agent.service import deployment_providers, mcp_configs, serve_agent
from threadline.services.cli.checkpoint import checkpoint_dir, make_checkpointer
from threadline.services.devmodel import DevModelSettings
from threadline.services.devmodel import serve as serve_devmodel
from threadline.services.gateway import Catalog, ProviderEntry, ensure_dev_token, serve_gateway
from threadline.services.gateway.projection_history import ProjectionHistory
from threadline.services.runtime.agents import agent_env, serve_agent_processes
from threadline.services.runtime.connect import DEV_TOKEN_FILE, dev_token

#: With none of these set, ``up`` serves answers from the local dev model.
PROVIDER_KEY_VARS = PROVIDER_VARS


def _cli() -> str:
    """How to run this ``threadline`` from here: its name when that is on PATH, else its
    path (``.venv/bin/threadline`` after ``make up``)."""
    exe = Path(sys.executable).parent / "threadline"
    if shutil.which("threadline") == str(exe):
        return "threadline"
    return os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)


CLI = _cli()


@dataclass
class Running:
    """What ``up`` started: lines for the banner and URLs for the runtime file."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    hint: str = ""

    def add(self, name: str, where: str) -> None:
        self.lines.append((name, where))


async def dev_model(
    stack: contextlib.AsyncExitStack, settings: Settings, env: Mapping[str, str] = os.environ
) -> str | None:
    """The URL of the dev model, started on ``stack`` when no provider key is set in
    ``env`` (else None)."""
    if any(env.get(var) for var in PROVIDER_KEY_VARS):
        return None
    devmodel = serve_devmodel(DevModelSettings(), settings.host, settings.devmodel_port)
    return await stack.enter_async_context(devmodel)


async def start_services(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    store: JetStreamEventStore,
    *,
    agents: int = 0,
    nats_url: str = "",
    stores: Mapping[str, JetStreamEventStore] | None = None,
) -> Running:
    """Start every service this build has; ``stack`` stops them in reverse order.
    ``agents`` > 0: that many agent worker processes on ``nats_url`` (``up``); 0: the
    agent runs in this process (tests that look inside it). The gateway uses ``store``;
    the projector and the checkpointer ``stores["projector"]`` and ``stores["checkpointer"]``
    where given (``up``: each service as its own NATS user), else ``store`` too."""
    by_user = stores or {}
    running = Running()
    devmodel = await dev_model(stack, settings)
    if devmodel is not None:
        running.add("dev model", f"{devmodel}/v1 (OpenAI wire), {devmodel} (Anthropic wire)")
        running.urls["devmodel"] = devmodel
    projector = await stack.enter_async_context(
        serve_projector(settings, by_user.get("projector", store))
    )
    where = "PostgreSQL" if settings.database_url else settings.data_path / "projections.sqlite3"
    running.add("projector", f"views in {where}")
    tools = ", ".join(c.name for c in mcp_configs(settings))
    if agents:
        env = agent_env(settings, store.settings, nats_url, devmodel)
        procs = await stack.enter_async_context(
            serve_agent_processes(agents, env, settings.data_path / "logs")
        )
        running.add("agents", f"{agents} worker processes; MCP servers: {tools}")
        running.lines += [(f"  {p.name}", f"pid {p.pid}, metrics {p.metrics_url}") for p in procs]
        running.urls["agent_pids"] = ",".join(str(p.pid) for p in procs)
    else:
        worker = await stack.enter_async_context(
            serve_agent(settings, by_user.get("agent", store), devmodel_url=devmodel)
        )
        running.add("agent", f"worker {worker.deps.settings.worker}; MCP servers: {tools}")
    settings, token = ensure_dev_token(settings, make=lambda: dev_token(settings))
    catalog = deployment_catalog(settings, devmodel_url=devmodel)
    history = ProjectionHistory(projector.reader)  # views, woken by the projector
    url = await stack.enter_async_context(
        serve_gateway(settings, store, catalog=catalog, history=history, dev_signin=token)
    )
    running.add("gateway", f"{url}  (API schema {url}/schema, metrics {url}/metrics)")
    if settings.checkpoint_interval_s > 0:
        # as its own user: it reads the log and appends checkpoints, nothing else
        checkpointer = await make_checkpointer(settings, by_user.get("checkpointer", store))
        every = settings.checkpoint_interval_s
        await stack.enter_async_context(running_checkpointer(checkpointer, every))
        running.add("checkpointer", f"every {every:g} s into {checkpoint_dir(settings)}")
    running.urls["gateway_url"] = url
    if token is not None:
        kept = settings.data_path / DEV_TOKEN_FILE
        running.add("dev token", f"{token}  (owner 'dev', kept in {kept}; or THREADLINE_TOKENS)")
    where = "" if settings.data_dir == Settings().data_dir else f" --data-dir {settings.data_dir}"
    running.hint = (
        f"Create a session:            curl -s -X POST {url}/v1/sessions -H 'Authorization: "
        f"Bearer {token or 'TOKEN'}'\n"
        f"Chat in the browser:         {url}/"
        + (" (signed in as 'dev' on this machine)\n" if token else "\n")
        + f"Chat from the terminal:      {CLI} chat{where}\n"
        f"Follow a session's events:   {CLI} replay SESSION --follow{where}\n"
        f"Check a session's integrity: {CLI} verify SESSION{where}"
    )
    return running


def deployment_catalog(settings: Settings, *, devmodel_url: str | None = None) -> Catalog:
    """What a deployment offers sessions: its configured providers and MCP servers, from
    the same sources the agent uses, so the gateway accepts exactly what the agent can
    serve."""
    registry = deployment_providers(settings, devmodel_url)
    default = registry.default_name()
    offered = [info for info in registry.describe() if info.configured]
    offered.sort(key=lambda info: info.name != default)  # the default first
    entries = [
        ProviderEntry(name=i.name, models=tuple(i.models), default_model=i.default_model, api=i.api)
        for i in offered
    ]
    servers = [c.name for c in mcp_configs(settings)]
    return Catalog(
        entries, servers, settings.max_steps, settings.max_tokens, settings.double_texting
    )
