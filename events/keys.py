"""Ed25519 key files, shared by everything Threadline signs: checkpoints
(events/checkpoint.py) and events (events/signing.py).

A private key is PKCS#8 PEM, made owner-only (0600 in a 0700 directory) with its public
key beside it (``<path>.pub``, SubjectPublicKeyInfo PEM). A key is named by its id: the
first 16 hex digits of SHA-256 over its raw 32-byte public key (docs/audit.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from threadline.base.errors import ConfigurationError


class KeyFileError(ConfigurationError):
    """A key file that cannot be used (unreadable, not an Ed25519 key)."""


def key_id(public: Ed25519PublicKey) -> str:
    """A key's id: the first 16 hex digits of SHA-256 over its raw 32 bytes."""
    return hashlib.sha256(raw_public(public)).hexdigest()[:16]


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def ensure_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key in ``path`` (PKCS#8 PEM), made first if there is none: the file
    owner-only (0600, its directory 0700), its public key beside it (``<path>.pub``)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fresh = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        public_path(path).write_bytes(public_pem(key.public_key()))
        os.replace(fresh, path)
    return load_signing_key(path)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read the signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private key")
    return key


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A public key (PEM file)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read the public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is not an Ed25519 public key")
    return key


def load_trusted_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Public keys (PEM files) by key id."""
    keys = (load_public_key(path) for path in paths)
    return {key_id(key): key for key in keys}
