"""What a deployment offers sessions: its configured providers and MCP servers.

Built from the same sources the agent uses (the provider registry and the MCP server
configuration), so the gateway accepts exactly what the agent can serve.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from threadline.base.config import Settings
from threadline.services.agent.providers import load_providers
from threadline.services.agent.service import mcp_configs
from threadline.services.gateway import ProviderEntry, StaticCatalog


def deployment_catalog(
    settings: Settings, *, devmodel_url: str | None = None, env: Mapping[str, str] | None = None
) -> StaticCatalog:
    environ = dict(os.environ if env is None else env)
    if devmodel_url:
        environ.setdefault("THREADLINE_DEVMODEL_URL", devmodel_url)
    registry = load_providers(environ, settings.providers)
    default = registry.default_name()
    offered = [
        info
        for info in registry.describe()
        if info.configured or (info.name.startswith("dev") and "THREADLINE_DEVMODEL_URL" in environ)
    ]
    offered.sort(key=lambda info: info.name != default)  # the default first
    entries = [
        ProviderEntry(name=i.name, models=tuple(i.models), default_model=i.default_model)
        for i in offered
    ]
    return StaticCatalog(entries, [c.name for c in mcp_configs(settings)])
