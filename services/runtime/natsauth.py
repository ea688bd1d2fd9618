"""Credentials for ``threadline up``'s embedded nats-server: not an open door.

``up`` makes a random password per user on first start (``nats-credentials.json`` in the
data dir, readable by the owner only, kept across restarts) and runs nats-server with the
production users and permissions (:func:`~threadline.services.runtime.natsusers.user_entries`):
an ``admin`` that ``up`` alone uses to create and check the stream and its buckets, and
``agent``, ``gateway``, ``projector`` and ``checkpointer``, which may append and read what
their work needs but never update, delete or purge the stream. A connection without a
user is refused. The passwords reach nats-server through its environment, so its config
file holds none.

CLI commands on the same data dir (``verify``, ``replay``, ``export``, ``fork`` ...) read
the file and connect as the service user whose rights they need (:func:`user_url`).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
from nats.js.api import StreamInfo
from nats.js.errors import BucketNotFoundError

from threadline.base.config import StreamSettings
from threadline.base.errors import StoreUnavailable
from threadline.events.kv import buckets
from threadline.events.stream import ensure_stream, unavailable
from threadline.services.runtime.files import write_private
from threadline.services.runtime.natsserver import EmbeddedNats
from threadline.services.runtime.natsusers import password_var, roles, user_entries

CREDENTIALS_FILE: Final = "nats-credentials.json"
ADMIN: Final = "admin"


def users() -> tuple[str, ...]:
    """Every user of the embedded server: the admin and the services' users."""
    return (ADMIN, *(role.user for role in roles()))


def read_credentials(data_path: Path) -> dict[str, str] | None:
    """The passwords by user kept in ``data_path`` (None: there are none)."""
    try:
        found = json.loads((data_path / CREDENTIALS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        return None
    return found


def credentials(data_path: Path) -> dict[str, str]:
    """The passwords kept in ``data_path``, made (random, owner-only file) for any user
    that has none yet."""
    found = read_credentials(data_path) or {}
    missing = [user for user in users() if not found.get(user)]
    if missing:
        # letters and digits, a letter first: nats-server parses an environment variable's
        # value as a config value (a leading digit makes it a number)
        found |= {user: "tl" + secrets.token_hex(24) for user in missing}
        write_private(data_path / CREDENTIALS_FILE, json.dumps(found, indent=2) + "\n")
    return found


def embedded_config(stream: StreamSettings) -> str:
    """nats-server config: the admin and the production users with their permissions,
    in the default account (where the unauthenticated embedded server kept its data, so
    an existing data dir keeps its stream)."""
    lines = [
        "# Written by `threadline up` (services/runtime/natsauth.py); passwords come from",
        "# the environment, the users and permissions from services/runtime/natsusers.py.",
        "authorization {",
        "  users: [",
        f"    {{ user: {ADMIN}, password: ${password_var(ADMIN)} }}",
        *user_entries(stream, "    "),
        "  ]",
        "}",
        "",
    ]
    return "\n".join(lines)


def secured_nats(
    store_dir: Path, data_path: Path, stream: StreamSettings, *, port: int = 0
) -> EmbeddedNats:
    """An :class:`EmbeddedNats` under ``store_dir`` that lets in only the users of
    :func:`credentials` (kept in ``data_path``)."""
    passwords = credentials(data_path)
    env = {password_var(user): password for user, password in passwords.items()}
    return EmbeddedNats(store_dir, config_text=embedded_config(stream), env=env, port=port)


def user_url(url: str, user: str, password: str) -> str:
    """``url`` (one or more, comma-separated) with ``user``'s credentials in it."""
    with_user = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        host = parts.netloc.rsplit("@", 1)[-1]
        with_user.append(urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}")))
    return ",".join(with_user)


def service_url(url: str, data_path: Path, user: str) -> str:
    """``url`` as ``user`` when ``data_path`` keeps credentials for it, else ``url``."""
    password = (read_credentials(data_path) or {}).get(user)
    return url if password is None else user_url(url, user, password)


async def provision(url: str, stream: StreamSettings, *, allow_unsafe: bool = False) -> StreamInfo:
    """As admin on ``url`` (one or more, comma-separated): create the stream and its
    buckets, or check them (a stream that is no longer what Threadline made is refused:
    :func:`ensure_stream`); answers the stream's info."""
    try:
        nc = await nats.connect(url.split(","), connect_timeout=5, allow_reconnect=False)
    except (nats.errors.Error, OSError) as exc:
        raise StoreUnavailable(f"cannot connect to NATS as {ADMIN}: {exc!r}") from None
    try:
        info = await ensure_stream(nc, stream, allow_unsafe=allow_unsafe)
        js = nc.jetstream()
        for bucket in buckets(stream):
            with unavailable(f"making bucket {bucket.bucket}"):
                try:
                    await js.key_value(bucket.bucket)
                except BucketNotFoundError:
                    await js.create_key_value(bucket)
    finally:
        await nc.close()
    return info
