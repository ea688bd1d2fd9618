"""Open the event store a command should use: the configured NATS, the one ``threadline up``
is running for this data dir, or (for one-off commands) a temporary embedded server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from threadline.base.config import Settings
from threadline.base.errors import StoreUnavailable
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.stream import require_stream
from threadline.services.runtime.eventkeys import event_keys
from threadline.services.runtime.files import write_private
from threadline.services.runtime.keys import keys_for
from threadline.services.runtime.natsauth import ADMIN, provision, secured_nats, service_url
from threadline.services.runtime.natsserver import EmbeddedNats

RUNTIME_FILE = "runtime.json"
#: the token ``up`` and ``gateway`` accept when none is configured, kept across restarts
DEV_TOKEN_FILE = "dev-token"


def runtime_path(settings: Settings) -> Path:
    return settings.data_path / RUNTIME_FILE


def write_runtime(settings: Settings, info: dict[str, object]) -> None:
    """Record what runs where."""
    write_private(runtime_path(settings), json.dumps(info, indent=2) + "\n")


def clear_runtime(settings: Settings) -> None:
    runtime_path(settings).unlink(missing_ok=True)


def read_runtime(settings: Settings) -> dict[str, object]:
    """What a ``threadline up`` running on this data dir recorded ({} if none is)."""
    try:
        info = json.loads(runtime_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def running_nats_url(settings: Settings) -> str | None:
    """The NATS URL recorded by a ``threadline up`` running on this data dir, if any."""
    url = read_runtime(settings).get("nats_url")
    return url if isinstance(url, str) else None


def read_dev_token(settings: Settings) -> str | None:
    """The dev token kept in the data dir, if there is one."""
    try:
        return (settings.data_path / DEV_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def configured_token(settings: Settings) -> str | None:
    """The first token of ``THREADLINE_TOKENS`` (``token:owner[:role],...``), if any."""
    return (settings.tokens or "").split(",", 1)[0].split(":", 1)[0] or None


def dev_token(settings: Settings) -> str:
    """The dev token kept in the data dir; made (random, owner-only file) on first use."""
    token = read_dev_token(settings)
    if token is None:
        token = secrets.token_urlsafe(32)
        write_private(settings.data_path / DEV_TOKEN_FILE, token + "\n")
    return token


@contextlib.asynccontextmanager
async def connected(
    settings: Settings, url: str, writer: str | None = None, *, ensure: bool = True
) -> AsyncIterator[JetStreamEventStore]:
    """The event store on ``url`` with the configured stream and the deployment's content
    keys (erasure records followed while it is open); closed on the way out.
    ``writer``: the service whose key signs what it appends (gateway, agent, cli; None:
    it appends no events); reads check signatures under the trust policy, if one is
    configured (:mod:`~threadline.services.runtime.eventkeys`). ``ensure=False``: create
    nothing; a missing stream raises :class:`StreamMissing`."""
    signer, trust = await asyncio.to_thread(event_keys, settings, writer)
    stream = settings.stream_settings()
    store = await JetStreamEventStore.connect(
        url,
        stream,
        ensure=ensure,
        allow_unsafe=settings.allow_unsafe_stream,
        signer=signer,
        trust=trust,
    )
    try:
        if not ensure:
            await require_stream(store.nc, stream)
        async with keys_for(settings, store):
            yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def open_store(
    settings: Settings,
    user: str = "projector",
    writer: str | None = None,
    *,
    ensure: bool = True,
) -> AsyncIterator[JetStreamEventStore]:
    """Connect to the event store for a one-off command (CLI tools): the configured NATS,
    or ``up``'s on this data dir as ``user`` (its credentials are kept there:
    :mod:`~threadline.services.runtime.natsauth`), or an embedded server of its own with
    the same users, started for the command. ``writer``: as for :func:`connected`.
    ``ensure=False`` (commands that only read, such as ``verify``): create nothing,
    neither the stream nor its buckets; a missing stream raises :class:`StreamMissing`."""
    async with contextlib.AsyncExitStack() as stack:
        for url in filter(None, (settings.nats_url, running_nats_url(settings))):
            if url != settings.nats_url:
                url = service_url(url, settings.data_path, user)
            try:
                store = await stack.enter_async_context(
                    connected(settings, url, writer, ensure=ensure)
                )
                break
            except StoreUnavailable:
                if url == settings.nats_url:
                    raise
                # a stale runtime file: that server is gone
        else:
            server = await embedded_nats(stack, settings, ensure=ensure)
            url = service_url(server.url, settings.data_path, user)
            store = await stack.enter_async_context(connected(settings, url, writer, ensure=ensure))
        yield store


async def embedded_nats(
    stack: contextlib.AsyncExitStack, settings: Settings, *, port: int = 0, ensure: bool = True
) -> EmbeddedNats:
    """Start the embedded nats-server under the data dir (its users' credentials kept
    there), stopped with ``stack``; with ``ensure``, create or check the stream and its
    buckets as its admin."""
    stream = settings.stream_settings()
    server = secured_nats(settings.data_path / "nats", settings.data_path, stream, port=port)
    await stack.enter_async_context(server)
    if ensure:
        admin = service_url(server.url, settings.data_path, ADMIN)
        await provision(admin, stream, allow_unsafe=settings.allow_unsafe_stream)
    return server
