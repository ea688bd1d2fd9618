"""Settings: defaults, then an optional TOML file, then ``THREADLINE_*`` environment variables.

Every setting is documented in docs/configuration.md. Values that are secrets (tokens,
provider keys) are never printed; :func:`Settings.public` shows the rest.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from threadline.base.errors import ConfigurationError
from threadline.base.redact import without_credentials

#: what a message sent while a turn of its session is open does (docs/human-in-the-loop.md):
#: queue behind it, be refused, stop it (its partial answer kept), or stop it and leave it
#: out of the model's context
DoubleTexting = Literal["enqueue", "reject", "interrupt", "rollback"]

#: the dev default of ``Settings.id_secret``, in the data dir
ID_SECRET_FILE = "id-secret"
S = TypeVar("S", bound=msgspec.Struct)


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the event stream is laid out. ``deny_*`` off is for tests of tampering only."""

    name: str = "THREADLINE"
    prefix: str = "tl"
    replicas: int = 1
    max_event_bytes: int = 512 * 1024
    duplicate_window_s: float = 900.0
    deny_delete: bool = True
    deny_purge: bool = True
    #: nats-server caps a stream at 1,000 consumers unless told otherwise; every live
    #: follower (one per watched session per gateway) is one
    max_consumers: int = 100_000


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = ".threadline"
    nats_url: str | None = None
    nats_port: int = 0
    host: str = "127.0.0.1"
    port: int = 8000
    stream: str = "THREADLINE"
    prefix: str = "tl"
    max_event_bytes: int = 512 * 1024
    allow_unsafe_stream: bool = False
    database_url: str | None = None
    tokens: str | None = None
    #: the secret that keys session ids derived from owners' keys (never printed); unset:
    #: a random one kept in ``<data_dir>/id-secret``
    id_secret: str | None = None
    devmodel_port: int = 0
    #: providers to switch to, in order, when a turn's provider keeps failing ("a,b")
    fallback_providers: str = ""
    #: how long the agent buffers token deltas into one event (the first is never held)
    delta_window_ms: float = 50.0
    #: tool steps per turn before a final answer without tools
    max_steps: int = 8
    #: the most output tokens a session may ask a reply to take (``params.max_tokens``)
    max_tokens: int = 131_072
    #: what a message sent while a turn runs does, for sessions that chose nothing
    double_texting: DoubleTexting = "enqueue"
    #: how long a tool call waits for a person's approval before it is denied (0: forever)
    approval_timeout_s: float = 3600.0
    #: agent worker processes ``threadline up`` starts (0: one per core)
    agents: int = 0
    #: the Ed25519 key that signs checkpoints (PEM; default <data_dir>/keys/checkpoint.key,
    #: made by ``up`` or ``checkpoint`` when missing), docs/audit.md
    checkpoint_key: str = ""
    #: where checkpoints are kept outside NATS (default <data_dir>/checkpoints)
    checkpoint_dir: str = ""
    #: how often ``up`` signs a checkpoint of the log (0: never; ``threadline checkpoint``)
    checkpoint_interval_s: float = 300.0
    #: "on": sign appended events and check their signatures under a trust policy
    #: (docs/audit.md); "off": no signing and no checks, whatever keys are configured (a
    #: benchmark's baseline)
    signing: Literal["on", "off"] = "on"
    #: this process's Ed25519 key for signing the events it appends (PEM; default
    #: <data_dir>/keys/<service>.key, when it exists: ``up`` makes one per service)
    signing_key: str = ""
    #: the trust policy: the public keys events may be signed by and which actors each may
    #: write (JSON; default <data_dir>/keys/trust.json, when it exists). Set: unsigned
    #: records are refused; unset: an unsigned deployment, as before
    trusted_keys: str = ""
    #: seal personal content per owner and month so it can be erased (docs/audit.md#erasure);
    #: off: new events are written in the clear (what is sealed still reads)
    seal_content: bool = True
    #: where content keys are kept (default <data_dir>/keys/content); erasing a key deletes
    #: its file there: back it up as docs/audit.md says
    content_key_dir: str = ""
    log_level: str = "INFO"
    #: "plain" or "json" (one object per line, with session and turn ids)
    log_format: str = "plain"
    config_file: str | None = None
    #: free-form sections (providers, mcp_servers...) read by the services that own them
    providers: dict[str, Any] = msgspec.field(default_factory=dict)
    mcp_servers: dict[str, Any] = msgspec.field(default_factory=dict)

    def stream_settings(self) -> StreamSettings:
        return StreamSettings(
            name=self.stream, prefix=self.prefix, max_event_bytes=self.max_event_bytes
        )

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def id_key(self) -> bytes:
        """``id_secret``, else the deployment's dev default: made once (random) in the
        data dir and read from there by every process sharing it."""
        if self.id_secret:
            return self.id_secret.encode()
        path = self.data_path / ID_SECRET_FILE
        if not path.exists():  # written whole, then linked: a reader never sees it half
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = path.with_name(f".{ID_SECRET_FILE}.{os.getpid()}")
            fresh.touch(mode=0o600)
            fresh.write_text(secrets.token_urlsafe(32))
            with contextlib.suppress(FileExistsError):
                os.link(fresh, path)  # another process made it first: theirs counts
            fresh.unlink()
        secret = path.read_text().strip()
        if not secret:
            raise ConfigurationError(f"{path} is empty: delete it or set THREADLINE_ID_SECRET")
        return secret.encode()

    def public(self) -> dict[str, Any]:
        """Settings safe to print (no tokens, no credentials in URLs)."""
        shown = msgspec.structs.asdict(self)
        shown["tokens"] = "(set)" if self.tokens else None
        shown["id_secret"] = "(set)" if self.id_secret else None
        for key in ("nats_url", "database_url"):
            if shown[key]:
                shown[key] = without_credentials(shown[key])
        return shown


_ENV_PREFIX = "THREADLINE_"
_SCALARS = {
    f.name for f in msgspec.structs.fields(Settings) if f.name not in {"providers", "mcp_servers"}
}


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from (lowest first) defaults, the TOML file, env, then overrides."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    path = config_file or env.get("THREADLINE_CONFIG")
    if path is None and Path("threadline.toml").is_file():
        path = "threadline.toml"
    if path:
        merged.update(_read_toml(path))
        merged["config_file"] = path
    merged.update(env_values(Settings, _ENV_PREFIX, env, _SCALARS))
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return convert(merged, Settings, "setting")


def env_values(
    struct: type[msgspec.Struct], prefix: str, env: Mapping[str, str], names: Iterable[str] = ()
) -> dict[str, str]:
    """The variables ``<prefix><NAME>`` set in ``env``, for the fields of ``struct`` (or
    for ``names``), by field name: every service reads its settings this way."""
    names = names or [f.name for f in msgspec.structs.fields(struct)]
    return {name: value for name in names if (value := env.get(prefix + name.upper()))}


def convert(values: Mapping[str, Any], struct: type[S], what: str) -> S:
    """``values`` (strings from the environment or a file) as ``struct``; a value that
    does not fit is a :class:`ConfigurationError` naming ``what``."""
    try:
        return msgspec.convert(values, struct, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"invalid {what}: {exc}") from None


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("threadline", data)
    if not isinstance(section, dict):
        raise ConfigurationError(f"config file {path}: [threadline] must be a table")
    return dict(section)
