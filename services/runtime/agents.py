"""Agent workers as child processes, one per core by default: what ``threadline up`` runs.

One Python process runs one core's worth of agent work (streams, appends, tool calls);
the turns are shared out by the agents' work queue, so N processes use N cores. Each
child is ``threadline agent --metrics-port 0`` on the parent's NATS server, stream and
data directory, ready once it prints its metrics URL, stopped with SIGTERM (its running
turns finish or go back to the queue) and dies with its parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Final

from threadline.base.config import Settings, StreamSettings
from threadline.services.runtime.eventkeys import policy_path, writer_key
from threadline.services.runtime.processes import ServiceProcess, service_env

__all__ = ["AgentProcess", "agent_count", "agent_env", "serve_agent_processes"]

_METRICS: Final = re.compile(r"metrics on (http://\S+)")


def agent_count(configured: int) -> int:
    """Agent processes to run: ``configured`` if positive, else one per core this
    process may run on."""
    if configured > 0:
        return configured
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def agent_env(
    settings: Settings, stream: StreamSettings, nats_url: str, devmodel_url: str | None
) -> dict[str, str]:
    """The environment of an agent child: this process's, and what this process was
    given otherwise (data dir, config file, log level, the stream)."""
    env = service_env(os.environ, nats_url, stream, settings.data_path)
    env["THREADLINE_LOG_LEVEL"] = settings.log_level
    if settings.config_file:
        env["THREADLINE_CONFIG"] = str(Path(settings.config_file).resolve())
    if devmodel_url:
        env["THREADLINE_DEVMODEL_URL"] = devmodel_url
    if settings.signing == "on" and (policy := policy_path(settings)) is not None:
        env["THREADLINE_TRUSTED_KEYS"] = str(policy)  # and each signs with the agents' key
        env["THREADLINE_SIGNING_KEY"] = settings.signing_key or str(writer_key(settings, "agent"))
    return env


class AgentProcess(ServiceProcess):
    """One ``threadline agent`` child."""

    def __init__(self, index: int, env: Mapping[str, str], log_dir: Path) -> None:
        super().__init__(
            f"agent-{index}", "threadline.services.cli", ["agent", "--metrics-port", "0"],
            env, log_dir / f"agent-{index}.log", _METRICS.pattern,
        )  # fmt: skip

    @property
    def metrics_url(self) -> str:
        match = _METRICS.search(self.ready_line)
        return match.group(1) if match else ""


@contextlib.asynccontextmanager
async def serve_agent_processes(
    count: int, env: Mapping[str, str], log_dir: Path
) -> AsyncIterator[list[AgentProcess]]:
    """Start ``count`` agent children at once and wait until all consume; stop them all
    (SIGTERM, then SIGKILL) on the way out, also when one failed to start."""
    agents = [AgentProcess(i, env, log_dir) for i in range(count)]
    try:
        started = await asyncio.gather(*(a.start() for a in agents), return_exceptions=True)
        for result in started:
            if isinstance(result, BaseException):
                raise result
        yield agents
    finally:
        await asyncio.gather(*(agent.stop() for agent in agents), return_exceptions=True)
