"""``threadline cluster``: a production-shaped deployment on this machine.

Three nats-servers forming a JetStream cluster on loopback (``sync_interval: always``,
the stream at R3), agent workers, a projector and gateways, each its own process, the
dev model when no provider key is set. Prints what runs where and runs until Ctrl-C or
SIGTERM, then stops everything. For trying scale-out and failures by hand: ``kill -9``
a nats-server or an agent from the list and watch the rest carry on.
Also runnable as ``python -m threadline.services.cli cluster``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

from msgspec.structs import replace

from threadline.base.config import Settings
from threadline.services.cli.stack import dev_model
from threadline.services.runtime.cluster import LocalCluster
from threadline.services.runtime.connect import configured_token
from threadline.services.runtime.files import write_private
from threadline.services.runtime.processes import stop_event


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help="where the cluster keeps data and logs (default ./.threadline/cluster)"
    )
    parser.add_argument("--agents", type=int, default=2, help="agent worker processes (2)")
    parser.add_argument("--gateways", type=int, default=2, help="gateway processes (2)")
    parser.add_argument(
        "--no-projector", action="store_true", help="do not start the projector process"
    )


def cluster_dir(args: argparse.Namespace, settings: Settings) -> Path:
    """``--data-dir`` as given, else ``cluster/`` under the configured data dir."""
    if args.data_dir:
        return Path(args.data_dir).expanduser().resolve()
    return settings.data_path / "cluster"


async def run(args: argparse.Namespace, settings: Settings) -> int:
    root = cluster_dir(args, settings)
    stop = stop_event()
    env = dict(os.environ)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per readiness poll
    async with contextlib.AsyncExitStack() as stack:
        devmodel = await dev_model(stack, settings, env)
        if devmodel is not None:
            env.setdefault("THREADLINE_DEVMODEL_URL", devmodel)
        cluster = LocalCluster(
            root,
            agents=args.agents,
            gateways=args.gateways,
            projector=not args.no_projector,
            stream=replace(settings.stream_settings(), replicas=3),  # the configured one, R3
            env=env,
            gateway_token=configured_token(settings),  # what the user already has
        )
        print(f"starting a 3-node JetStream cluster and services under {root} ...", flush=True)
        await stack.enter_async_context(cluster)
        token_file = root / "gateway-token" if cluster.gateways else None
        if token_file is not None:  # readable by this user only, never on the terminal
            write_private(token_file, cluster.gateway_token + "\n")
        _print_summary(cluster, devmodel, token_file)
        await stop.wait()
        print("\nstopping ...", flush=True)
    print("stopped.", flush=True)
    return 0


def summary(cluster: LocalCluster) -> list[tuple[str, str]]:
    """What runs where: (name, description) lines."""
    lines = []
    for i, (node, url) in enumerate(zip(cluster.nodes, cluster.nats_urls, strict=True)):
        where = f"monitor {cluster.monitor_urls[i]}, store {node.store_dir}, pid {node.pid}"
        lines.append((f"nats-{i}", f"{url}  ({where})"))
    stream = cluster.stream
    lines.append(
        ("stream", f"{stream.name} R{stream.replicas}, subjects "
                   f"{stream.prefix}.<session>.<kind>, sync_interval always")
    )  # fmt: skip
    for svc in cluster.agents + cluster.projectors:
        where = f"{svc.env['THREADLINE_NATS_URL']}  (pid {svc.pid}, log {svc.log_path})"
        lines.append((svc.name, where))
    for svc, url in zip(cluster.gateways, cluster.gateway_urls, strict=True):
        lines.append((svc.name, f"{url}  (pid {svc.pid}, log {svc.log_path})"))
    if not cluster.gateways:
        lines.append(("gateway", "not started (none requested, or not in this build)"))
    return lines


def _print_summary(cluster: LocalCluster, devmodel: str | None, token_file: Path | None) -> None:
    lines = ["", "Threadline cluster is running."]
    lines += [f"  {name:<11} {where}" for name, where in summary(cluster)]
    if devmodel:
        lines.append(f"  {'dev model':<11} {devmodel} (no provider key set)")
    lines += [
        "",
        f"Other commands: THREADLINE_NATS_URL={cluster.service_url(0)} threadline replay|verify ..."
        " (clients learn the other nodes from the cluster)",
        "Kill a node or an agent with kill -9 <pid> to watch fail-over; logs are listed above.",
    ]
    if token_file is not None:
        lines.append(f"Gateway token (owner 'dev'): in {token_file}")
        base = cluster.gateway_urls[0] if cluster.gateway_urls else "http://HOST:PORT"
        lines.append(
            f'  try: curl -H "Authorization: Bearer $(cat {token_file})" {base}/v1/sessions'
        )
    lines += ["Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)
