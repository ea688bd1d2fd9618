"""A local production-shaped deployment: a three-node JetStream cluster on loopback, the
stream at R3, agent workers, a projector and gateways as separate processes.

``threadline cluster`` runs it until Ctrl-C; tests use it directly::

    async with LocalCluster(tmp_path, agents=2, gateways=2) as cluster:
        store = await JetStreamEventStore.connect(cluster.nats_urls, cluster.stream)
        await cluster.kill_node(0)       # kill -9 one nats-server
        await cluster.restart_node(0)    # same ports and store; waits until it is current
        await cluster.kill_agent(1)      # kill -9 an agent worker (and its MCP server)
        await cluster.restart_agent(1)

The nodes are rendered by :mod:`threadline.services.runtime.natsconf` (the same
settings as ``deploy/nats/``: ``sync_interval: always``, one cluster name, R3). Every
child runs in its own process group and dies with this process (PDEATHSIG); ``stop()``
(or leaving the ``async with``, also on errors) stops services first, then the nodes.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import httpx
import nats
import nats.errors

from threadline.base.config import StreamSettings
from threadline.base.errors import StoreUnavailable, StreamConfigError
from threadline.services.runtime.natsauth import provision
from threadline.services.runtime.natsconf import NodeConfig, render_node
from threadline.services.runtime.natsserver import EmbeddedNats
from threadline.services.runtime.processes import (
    ServiceProcess,
    free_ports,
    service_env,
    stream_last_seq,
    wait_healthy,
)

_GATEWAY_URL: Final = re.compile(r"Threadline gateway on (http://\S+)")
_POLL_S: Final = 0.1


def gateway_module() -> list[str]:
    """How to run ``threadline gateway`` as a module."""
    return ["threadline.services.cli", "gateway"]


class LocalCluster:
    """Three nats-servers, the stream at R3, and Threadline's services as processes."""

    def __init__(
        self,
        data_dir: Path,
        *,
        agents: int = 2,
        gateways: int = 2,
        projector: bool = True,
        nodes: int = 3,
        stream: StreamSettings | None = None,
        env: Mapping[str, str] | None = None,
        agent_args: Sequence[str] = (),
        gateway_token: str | None = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.stream = stream or StreamSettings(replicas=nodes)
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.env = dict(os.environ if env is None else env)
        self.gateway_token = gateway_token or secrets.token_urlsafe(24)
        #: one secret for every gateway's derived session ids (each has its own data dir)
        self.id_secret = secrets.token_urlsafe(32)
        ports = free_ports(3 * nodes, host)
        self._http_ports = ports[2 * nodes :]
        routes = [f"nats-route://{host}:{p}" for p in ports[nodes : 2 * nodes]]
        self.nodes = [
            EmbeddedNats(
                self.data_dir / f"nats-{i}",
                port=ports[i],
                host=host,
                config_text=render_node(
                    NodeConfig(
                        name=f"nats-{i}",
                        store_dir=None,  # EmbeddedNats passes it as -sd
                        routes=routes,
                        host=host,
                        client_port=ports[i],
                        cluster_port=ports[nodes + i],
                        http_port=self._http_ports[i],
                    )
                ),
                startup_timeout_s=startup_timeout_s,
            )
            for i in range(nodes)
        ]
        self.nats_urls = [f"nats://{host}:{p}" for p in ports[:nodes]]
        cli = "threadline.services.cli"
        self.agents = [
            self._service(f"agent-{i}", [cli, "agent", *agent_args], "agent worker consuming", i)
            for i in range(agents)
        ]
        self.projectors = [
            self._service("projector", [cli, "projector"], "^projector: ", 0)
            for _ in range(1 if projector else 0)
        ]
        gateway = [*gateway_module(), "--host", host, "--port", "0"]
        self.gateways = [
            self._service(f"gateway-{i}", gateway, _GATEWAY_URL.pattern, i) for i in range(gateways)
        ]

    # ------------------------------------------------------------------ addresses

    @property
    def monitor_urls(self) -> list[str]:
        return [f"http://{self.host}:{p}" for p in self._http_ports]

    @property
    def gateway_urls(self) -> list[str]:
        found = (_GATEWAY_URL.search(gw.ready_line) for gw in self.gateways)
        return [match.group(1) for match in found if match]

    def service_url(self, index: int = 0) -> str:
        """What a service gets as ``THREADLINE_NATS_URL``: every node, comma-separated,
        starting at node ``index`` (nats-py shuffles the list and fails over to any)."""
        n = len(self.nats_urls)
        return ",".join(self.nats_urls[(index + i) % n] for i in range(n))

    # ------------------------------------------------------------------ life cycle

    async def __aenter__(self) -> LocalCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await asyncio.gather(*(node.start() for node in self.nodes))
            await self.wait_healthy()
            await self._create_stream()
            services = self.agents + self.projectors + self.gateways
            await asyncio.gather(*(svc.start() for svc in services))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every service (SIGTERM, then SIGKILL), then every node. Never raises."""
        services = self.gateways + self.agents + self.projectors
        await asyncio.gather(*(svc.stop() for svc in services), return_exceptions=True)
        await asyncio.gather(*(node.stop() for node in self.nodes), return_exceptions=True)

    async def wait_healthy(self, nodes: Sequence[int] | None = None) -> None:
        """Wait until the nodes (default: all) are healthy; see :func:`wait_healthy`."""
        indexes = range(len(self.nodes)) if nodes is None else nodes
        await wait_healthy([self.monitor_urls[i] for i in indexes], self.startup_timeout_s)

    async def _create_stream(self) -> None:
        """The stream and its buckets, at the stream's R (services would make them R1)."""
        info = await provision(self.service_url(), self.stream)
        if info.config.num_replicas != self.stream.replicas:
            raise StreamConfigError(
                f"stream {self.stream.name} has {info.config.num_replicas} replicas, "
                f"expected {self.stream.replicas} (a data dir from another set-up?)"
            )

    def _service(self, name: str, command: list[str], ready: str, index: int) -> ServiceProcess:
        env = service_env(self.env, self.service_url(index), self.stream, self.data_dir / name)
        if name.startswith("gateway"):
            env.setdefault("THREADLINE_TOKENS", f"{self.gateway_token}:dev")
            env.setdefault("THREADLINE_ID_SECRET", self.id_secret)
        module, *args = command
        log = self.data_dir / "logs" / f"{name}.log"
        return ServiceProcess(
            name, module, args, env, log, ready, startup_timeout_s=self.startup_timeout_s
        )

    # ------------------------------------------------------------------ faults

    async def kill_node(self, index: int) -> None:
        """``kill -9`` one nats-server."""
        await self.nodes[index].stop(kill=True)

    async def restart_node(self, index: int) -> None:
        """Start a stopped node again (same ports and store); wait until it is healthy and
        its copy of the stream has caught up with where the others were by then."""
        await self.nodes[index].restart()
        await self.wait_healthy([index])
        await self.wait_caught_up([index])

    async def stream_positions(self) -> dict[int, int]:
        """Each running node's own copy of the stream: the last sequence it holds (from
        its monitoring endpoint, so a follower that is behind shows as behind)."""
        running = [i for i, node in enumerate(self.nodes) if node.process is not None]
        async with httpx.AsyncClient(timeout=2.0) as client:
            seqs = [await stream_last_seq(client, self.monitor_urls[i], self.stream.name)
                    for i in running]  # fmt: skip
        return {i: seq for i, seq in zip(running, seqs, strict=True) if seq is not None}

    async def wait_caught_up(self, nodes: Sequence[int] | None = None) -> None:
        """Wait until the nodes' copies of the stream (default: every running node's)
        reach the furthest position any node holds now. A follower serves reads (R1
        consumers, direct gets) from its own copy, so reads are only complete after
        this. Bounded polling: the server offers no event for it."""
        target = max((await self.stream_positions()).values(), default=0)
        wanted = set(range(len(self.nodes)) if nodes is None else nodes)
        wanted = {i for i in wanted if self.nodes[i].process is not None}
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                while True:
                    positions = await self.stream_positions()
                    if all(positions.get(i, -1) >= target for i in wanted):
                        return
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise StoreUnavailable(
                f"stream copies did not reach {target} within {self.startup_timeout_s} s: "
                f"{await self.stream_positions()}"
            ) from None

    async def kill_agent(self, index: int) -> None:
        """``kill -9`` one agent worker and its children (its MCP server)."""
        await self.agents[index].stop(kill=True)

    async def restart_agent(self, index: int, *, attempts: int = 4) -> None:
        """Start an agent worker again. Like a supervisor's restart policy, try again if
        it exits during start-up (e.g. the stream is electing a leader and its start-up
        check times out)."""
        agent = self.agents[index]
        await agent.stop()
        for attempt in range(1, attempts + 1):
            agent.env["THREADLINE_NATS_URL"] = self.service_url(index + attempt - 1)
            try:
                await agent.start()
                return
            except StoreUnavailable:
                if attempt == attempts:
                    raise

    async def stream_leader(self) -> int | None:
        """Index of the node leading the stream, if one does."""
        nc = await nats.connect(self.nats_urls, connect_timeout=5)
        try:
            info = await nc.jetstream().stream_info(self.stream.name)
        except nats.errors.Error:
            return None
        finally:
            await nc.close()
        leader = info.cluster.leader if info.cluster else None
        return int(leader.rsplit("-", 1)[1]) if leader else None
