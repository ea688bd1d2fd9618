"""The content keys a process uses (docs/audit.md#erasure): one keyring per key
directory per process, installed for readers without one of their own (the one used
last: a service process has one), kept current by one follower of the log's erasure
records per keyring."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from threadline.base.config import Settings
from threadline.events.erasure import follow_erasures
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.sealing import DirectoryKeyStore, Keyring, install, installed

_keyrings: dict[Path, Keyring] = {}
#: how long closing a store waits for its erasure follower to stop
_STOP_S = 5.0
_followers: dict[int, tuple[asyncio.Task[None], int]] = {}


def content_key_dir(settings: Settings) -> Path:
    """Where the content keys are kept."""
    if settings.content_key_dir:
        return Path(settings.content_key_dir).expanduser().resolve()
    return settings.data_path / "keys" / "content"


def sealing_configured(settings: Settings) -> bool:
    """Whether this deployment has a content key directory to seal under: one named
    (``content_key_dir``) or the data dir's, once made (``threadline up`` makes it). Every
    process that reads what another sealed needs the same directory, so processes with
    data dirs of their own (``threadline cluster``, separate hosts) write in the clear
    unless they share one."""
    return bool(settings.content_key_dir) or content_key_dir(settings).is_dir()


def ensure_content_key_dir(settings: Settings) -> Path:
    """Make the data dir's content key directory (``up``: sealing on for its processes)."""
    path = content_key_dir(settings)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def keyring_for(settings: Settings) -> Keyring:
    """The process's keyring for the deployment's key directory (made on first use;
    the first one made is the process's default). It seals new content only where
    :func:`sealing_configured`; what is sealed reads wherever its key is."""
    path = content_key_dir(settings)
    keyring = _keyrings.get(path)
    if keyring is None:
        keyring = _keyrings[path] = Keyring(DirectoryKeyStore(path))
    keyring.enabled = settings.seal_content and sealing_configured(settings)
    if installed() is not keyring:  # a service process has one; a test, the newest
        install(keyring)
    return keyring


@contextlib.asynccontextmanager
async def keys_for(settings: Settings, store: JetStreamEventStore) -> AsyncIterator[Keyring]:
    """``store`` given the deployment's keyring, and erasure records followed into it
    while the block runs (one follower per keyring, however many stores share it)."""
    keyring = store.keyring = keyring_for(settings)
    slot = id(keyring)
    task, users = _followers.get(slot, (None, 0))
    if task is None or task.done():
        task = asyncio.create_task(follow_erasures(store, keyring), name="erasures")
        users = 0
    _followers[slot] = (task, users + 1)
    try:
        yield keyring
    finally:
        task, users = _followers[slot]
        if users > 1:
            _followers[slot] = (task, users - 1)
        else:
            del _followers[slot]
            task.cancel()
            # bounded: it ends once cancelled, or at the latest when the store closes
            await asyncio.wait([task], timeout=_STOP_S)
