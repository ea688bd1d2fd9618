"""Run ``deploy/nats/nats-server.conf`` for real: three nats-servers on loopback, each
from a temporary copy of the production file with only ports and paths substituted,
with certificates from a throw-away CA and random passwords in the environment."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import secrets
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import nats
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from nats.aio.client import Client

from threadline.base.config import StreamSettings
from threadline.base.errors import StoreUnavailable
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS
from threadline.events.store import Recorded
from threadline.services.runtime.cluster import gateway_module
from threadline.services.runtime.natsconf import PROD_STORE_DIR, PROD_TLS_DIR, production_hosts
from threadline.services.runtime.natsserver import find_binary
from threadline.services.runtime.natsusers import roles
from threadline.services.runtime.processes import (
    ServiceProcess,
    _die_with_parent,
    free_ports,
    wait_healthy,
)

T = TypeVar("T")
STREAM = StreamSettings()
CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "nats-server.conf"
USERS = ("sys", "admin", *(role.user for role in roles()))
USAGES = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]  # routes: both


def make_certificates(where: Path) -> Path:
    """A CA, and one certificate for every server (client TLS and mutual route TLS)."""
    where.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "threadline test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in ["localhost", "nats"]]
    names += [x509.DNSName(h) for h in production_hosts()]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(USAGES), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (where / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("server", "route"):
        (where / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (where / f"{name}.key").write_bytes(pem_key)
    return where / "ca.crt"


@dataclass
class Node:
    name: str
    conf: Path
    client_port: int
    http_port: int
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            find_binary(), "-c", str(self.conf), env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            start_new_session=True,
        )  # fmt: skip
        assert self.process.stderr is not None
        lines: list[bytes] = []
        async with asyncio.timeout(20):
            while b"Server is ready" not in (lines[-1] if lines else b""):
                line = await self.process.stderr.readline()
                assert line, f"{self.name} exited:\n" + b"".join(lines[-8:]).decode()
                lines.append(line)
        self.drain = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while await self.process.stderr.readline():
            pass

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)
            await self.process.wait()
        if self.drain is not None:
            self.drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.drain
        self.process = None


@dataclass
class ProdCluster:
    nodes: list[Node]
    passwords: dict[str, str]
    ca: Path
    monitor_urls: list[str] = field(default_factory=list)

    def urls(self, user: str) -> list[str]:
        """Every node, with ``user``'s credentials (never logged by the store)."""
        pw = self.passwords[user]
        return [f"nats://{user}:{pw}@127.0.0.1:{n.client_port}" for n in self.nodes]

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def substituted(text: str, root: Path, node: int, ports: list[list[int]]) -> str:
    """The production file with loopback ports and temporary paths; every substitution
    must apply, so a change to the file that this test does not understand fails it."""
    client, cluster, http = ports[node]
    swaps = {
        '"0.0.0.0:4222"': f'"127.0.0.1:{client}"',
        '"0.0.0.0:6222"': f'"127.0.0.1:{cluster}"',
        '"0.0.0.0:8222"': f'"127.0.0.1:{http}"',
        PROD_STORE_DIR: str(root / f"node-{node}"),
        PROD_TLS_DIR: str(root / "tls"),
    }
    for i, host in enumerate(production_hosts()):
        swaps[f"nats-route://{host}:6222"] = f"nats-route://127.0.0.1:{ports[i][1]}"
    for old, new in swaps.items():
        assert old in text, f"{old!r} not in {CONF}"
        text = text.replace(old, new)
    return text


@contextlib.asynccontextmanager
async def prod_cluster(root: Path) -> AsyncIterator[ProdCluster]:
    ca = make_certificates(root / "tls")
    # env values are parsed as config values: start with a letter, no punctuation
    passwords = {user: "p" + secrets.token_hex(16) for user in USERS}
    env = dict(os.environ) | {f"NATS_{u.upper()}_PASSWORD": pw for u, pw in passwords.items()}
    flat = free_ports(9)
    ports = [flat[i * 3 : i * 3 + 3] for i in range(3)]
    text = CONF.read_text()
    nodes = []
    for i in range(3):
        conf = root / f"nats-{i}.conf"
        conf.write_text(substituted(text, root, i, ports))
        node_env = env | {"NATS_SERVER_NAME": f"nats-{i}"}
        nodes.append(Node(f"nats-{i}", conf, ports[i][0], ports[i][2], node_env))
    cluster = ProdCluster(nodes, passwords, ca, [f"http://127.0.0.1:{p[2]}" for p in ports])
    try:
        await asyncio.gather(*(n.start() for n in nodes))
        await wait_healthy(cluster.monitor_urls, 60)
        yield cluster
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


async def connect(cluster: ProdCluster, user: str, errors: list[str] | None = None) -> Client:
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    return await nats.connect(
        cluster.urls(user), tls=cluster.tls(), error_cb=on_error, connect_timeout=5
    )


def violation(errors: list[str], subject: str) -> bool:
    """Did the server report a permissions violation for ``subject`` (or one starting so)?"""
    wanted = f'permissions violation for publish to "{subject}'.lower()
    return any(wanted in e.lower() for e in errors)


async def retried(call: Callable[[], Awaitable[T]], timeout_s: float = 30.0) -> T:
    """What a client does while leaders are elected: try again (same event, same key)
    after a short back-off until it works."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                return await call()
            except StoreUnavailable:
                await asyncio.sleep(0.2)


def service(user: str, prod: ProdCluster, env: dict[str, str], tmp: Path) -> ServiceProcess:
    """The real ``threadline agent`` or ``threadline gateway`` process, connected as
    ``user`` (its log: ``tmp/<user>.log``)."""
    env = env | {
        "THREADLINE_NATS_URL": prod.urls(user)[0],
        "THREADLINE_DATA_DIR": str(tmp / user),
    }
    if user == "agent":
        return ServiceProcess(
            "agent", "threadline.services.cli", ["agent"], env, tmp / "agent.log",
            "agent worker consuming",
        )  # fmt: skip
    module, *args = gateway_module() or []
    return ServiceProcess(
        "gateway", module, [*args, "--port", "0"], env, tmp / "gateway.log",
        r"Threadline gateway on http://\S+",
    )  # fmt: skip


async def until_terminal(
    store: JetStreamEventStore, session: str, *, after: int = 0
) -> AsyncIterator[Recorded]:
    """The session's events after ``after`` up to the first terminal one."""
    follow = store.follow(session, after=after)
    async with contextlib.aclosing(follow):
        async for rec in follow:
            yield rec
            if rec.kind in TERMINAL_KINDS:
                return
