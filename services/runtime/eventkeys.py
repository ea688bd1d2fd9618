"""Which key each process signs its events with, and which keys it trusts
(events/signing.py, docs/audit.md).

``threadline up`` makes a key set in ``<data dir>/keys``: one Ed25519 key per writer
(:data:`WRITERS`: the gateway, the agents, the CLI's commands) and the trust policy
naming them (``trust.json``). Every process on that data dir finds its own key and the
policy there; ``THREADLINE_SIGNING_KEY`` and ``THREADLINE_TRUSTED_KEYS`` name them
elsewhere, and ``THREADLINE_SIGNING=off`` turns signing and checking off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from threadline.base.config import Settings
from threadline.base.errors import ConfigurationError
from threadline.events.signing import Grant, Signer, TrustPolicy, ensure_key_set

KEYS_DIR: Final = "keys"
POLICY_FILE: Final = "trust.json"

#: what each of ``up``'s writers may write: the gateway, people's intents (and a fork's
#: copies, which keep their source's actors); agents, their turns; both, the ``system``
#: denials of expired approvals; the CLI (``threadline fork``), an operator's forks
WRITERS: Final = {
    "gateway": Grant(("user:*", "system"), copies=True),
    "agent": Grant(("agent:*", "system")),
    "cli": Grant(("system",), copies=True),
}


def keys_dir(settings: Settings) -> Path:
    return settings.data_path / KEYS_DIR


def policy_path(settings: Settings) -> Path | None:
    """The trust policy's file: configured, else the data dir's if there is one."""
    if settings.trusted_keys:
        return Path(settings.trusted_keys).expanduser()
    default = keys_dir(settings) / POLICY_FILE
    return default if default.exists() else None


def event_keys(settings: Settings, writer: str | None) -> tuple[Signer | None, TrustPolicy | None]:
    """The signer of ``writer`` (None: this process appends no events) and the trust
    policy, as configured; (None, None) with signing off or nothing configured. Reads
    key files: call it off the event loop."""
    if settings.signing == "off":
        return None, None
    where = policy_path(settings)
    trust = TrustPolicy.load(where) if where is not None else None
    if writer is None:
        return None, trust
    if settings.signing_key:
        key: Path | None = Path(settings.signing_key).expanduser()
    else:
        key = writer_key(settings, writer)
        key = key if key.exists() else None
    signer = Signer.from_file(key) if key is not None else None
    if signer is None and trust is not None:
        raise ConfigurationError(
            f"the trust policy {where} refuses unsigned events, and the {writer} has no "
            f"signing key: set THREADLINE_SIGNING_KEY (or THREADLINE_SIGNING=off)"
        )
    return signer, trust


def ensure_deployment_keys(settings: Settings, log_end: int = 0) -> Path | None:
    """``up``'s key set in the data dir (made or completed; a configured trust policy
    is the operator's: left alone). ``log_end``: the log's last position when the
    policy is made, the records up to it (from before the deployment signed) may stay
    unsigned. The policy's path; None with signing off."""
    if settings.signing == "off" or settings.trusted_keys:
        return None
    return ensure_key_set(keys_dir(settings), WRITERS, POLICY_FILE, log_end + 1)


def needs_policy(settings: Settings) -> bool:
    """Whether ``up`` is about to make the data dir's trust policy (its first signed
    start): it then needs the log's end, for :func:`ensure_deployment_keys`."""
    if settings.signing == "off" or settings.trusted_keys:
        return False
    return not (keys_dir(settings) / POLICY_FILE).exists()


def writer_key(settings: Settings, writer: str) -> Path:
    """Where ``up``'s key set keeps ``writer``'s key."""
    return keys_dir(settings) / f"{writer}.key"
