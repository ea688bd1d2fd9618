"""nats-server configuration for a JetStream cluster, in one place.

The local cluster harness (``threadline cluster``, the cluster tests) and the production
files under ``deploy/nats/`` are rendered by the same functions, so both run with the
same durability settings (``sync_interval: always``, file storage, one cluster name,
R3 streams). ``deploy/nats/nats-server.conf`` is the output of :func:`production_config`
(regenerate it with ``python -m threadline.services.runtime.natsconf``); a test fails
when the checked-in file and this module disagree.

Production adds what a loopback harness does not need: TLS for clients and routes
(mutual TLS between servers), and accounts with per-service users
(:mod:`threadline.services.runtime.natsusers`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from threadline.base.config import StreamSettings
from threadline.events.stream import stream_config
from threadline.services.runtime.natsusers import accounts_block, bucket_files, conf_list

CLUSTER_NAME: Final = "threadline"
#: fsync before acknowledging: without it an OS crash or power loss loses acknowledged
#: writes (Jepsen, NATS 2.12.1). Never change this for production.
SYNC_INTERVAL: Final = "always"
PRODUCTION_REPLICAS: Final = 3


@dataclass(frozen=True)
class Var:
    """A nats-server variable reference (``$NAME``), resolved from the environment."""

    name: str


Value = str | int | bool | Var


@dataclass(frozen=True)
class Tls:
    """Certificate paths (PEM). ``verify`` asks peers for a certificate signed by ``ca``."""

    cert: str
    key: str
    ca: str
    verify: bool = False


@dataclass(frozen=True)
class NodeConfig:
    """One nats-server of the cluster."""

    name: Value
    store_dir: str | None  # None: given on the command line (``-sd``, as EmbeddedNats does)
    routes: Sequence[str]
    host: str = "127.0.0.1"
    client_port: int = 4222
    cluster_port: int = 6222
    http_port: int = 8222
    tls: Tls | None = None
    route_tls: Tls | None = None
    accounts: str | None = None  # a rendered accounts block (see :func:`accounts_block`)
    max_file_store: str | None = None
    max_memory_store: str | None = None
    #: don't tell clients about the other nodes (they connect through a service name)
    no_advertise: bool = False
    extra: dict[str, Value] = field(default_factory=dict)


def _value(value: Value) -> str:
    if isinstance(value, Var):
        return f"${value.name}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def _tls_block(tls: Tls, indent: str) -> str:
    files = {"cert_file": tls.cert, "key_file": tls.key, "ca_file": tls.ca}
    lines = [f"{indent}tls {{", *(f"{indent}  {k}: {json.dumps(v)}" for k, v in files.items())]
    lines += [f"{indent}  verify: {_value(tls.verify)}", f"{indent}  timeout: 2", f"{indent}}}"]
    return "\n".join(lines)


def render_node(node: NodeConfig) -> str:
    """The nats-server configuration text of one node."""
    out = [
        f"server_name: {_value(node.name)}",
        f'listen: "{node.host}:{node.client_port}"',
        f'http: "{node.host}:{node.http_port}"',
    ]
    out += [f"{key}: {_value(value)}" for key, value in node.extra.items()]
    if node.tls is not None:
        out += ["", "# TLS for client connections (services, operators)", _tls_block(node.tls, "")]
    js = ["jetstream {"]
    if node.store_dir is not None:
        js.append(f"  store_dir: {json.dumps(node.store_dir)}")
    js += [
        "  # fsync every write before acknowledging it (see deploy/README.md, Jepsen 2.12.1)",
        f"  sync_interval: {SYNC_INTERVAL}",
    ]
    limits = {"max_memory_store": node.max_memory_store, "max_file_store": node.max_file_store}
    js += [f"  {key}: {value}" for key, value in limits.items() if value]
    out += ["", *js, "}", ""]
    out += [
        "cluster {",
        f"  name: {CLUSTER_NAME}",
        f'  listen: "{node.host}:{node.cluster_port}"',
        f"  routes: {conf_list(node.routes, '  ')}",
    ]
    if node.no_advertise:
        out += [
            "  # clients reach the cluster through one name (a Kubernetes Service, a compose",
            "  # alias) that resolves to every node, with their credentials; no discovery",
            "  no_advertise: true",
        ]
    if node.route_tls is not None:
        out += ["  # mutual TLS between servers: a route needs a certificate from our CA"]
        out += [_tls_block(node.route_tls, "  ")]
    out += ["}"]
    if node.accounts is not None:
        out += ["", node.accounts]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- files


def production_hosts(count: int = 3) -> list[str]:
    """Node host names: a Kubernetes StatefulSet ``nats`` behind a headless service
    ``nats`` (``nats-0.nats``...); compose gives its services the same aliases."""
    return [f"nats-{i}.nats" for i in range(count)]


PROD_TLS_DIR: Final = "/etc/nats/tls"
PROD_STORE_DIR: Final = "/data/jetstream"

HEADER: Final = """\
# Threadline: production nats-server configuration (one file for every node).
# GENERATED by `python -m threadline.services.runtime.natsconf` from
# services/runtime/natsconf.py (the local cluster harness renders the same settings).
# Explained in deploy/README.md. Per node: NATS_SERVER_NAME (nats-0, nats-1, nats-2),
# and the passwords NATS_*_PASSWORD in the environment; certificates under /etc/nats/tls.

"""


def production_config() -> str:
    """The text of ``deploy/nats/nats-server.conf``."""
    tls = Tls(f"{PROD_TLS_DIR}/server.crt", f"{PROD_TLS_DIR}/server.key", f"{PROD_TLS_DIR}/ca.crt")
    route_tls = Tls(
        f"{PROD_TLS_DIR}/route.crt", f"{PROD_TLS_DIR}/route.key", f"{PROD_TLS_DIR}/ca.crt", True
    )
    node = NodeConfig(
        name=Var("NATS_SERVER_NAME"),
        store_dir=PROD_STORE_DIR,
        routes=[f"nats-route://{host}:6222" for host in production_hosts()],
        host="0.0.0.0",
        tls=tls,
        route_tls=route_tls,
        accounts=accounts_block(),
        max_memory_store="1GB",
        max_file_store="100GB",
        no_advertise=True,
        extra={"max_payload": 1024 * 1024},
    )
    return HEADER + render_node(node)


def production_stream() -> dict[str, object]:
    """The stream as JetStream's API takes it (``deploy/nats/stream.json``; ``nats stream
    add --config stream.json``): Threadline's settings at R3."""
    config = stream_config(StreamSettings(replicas=PRODUCTION_REPLICAS)).as_dict()
    return dict(sorted(config.items()))


def production_stream_json() -> str:
    return json.dumps(production_stream(), indent=2) + "\n"


def production_buckets() -> dict[str, str]:
    """``deploy/nats/kv-*.json``: the key-value buckets beside the stream, at R3, for
    ``nats stream add --config`` by the admin (the services' users may not make them)."""
    return bucket_files(StreamSettings(replicas=PRODUCTION_REPLICAS))


def main(argv: Sequence[str] | None = None) -> int:
    """Print ``nats-server.conf`` (default), ``stream.json`` or a ``kv-*.json`` for
    ``deploy/nats/``."""
    which = (list(sys.argv[1:] if argv is None else argv) or ["nats-server.conf"])[0]
    files = {"nats-server.conf": production_config(), "stream.json": production_stream_json()}
    files |= production_buckets()
    if which not in files:
        print(f"usage: python -m {__spec__.name if __spec__ else __name__} [{'|'.join(files)}]")
        return 2
    sys.stdout.write(files[which])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
