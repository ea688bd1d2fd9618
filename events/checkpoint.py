"""Signed checkpoints: a tree head over the whole log, signed with Ed25519.

A checkpoint says "the log ``log`` held ``size`` records, stream positions
``first_position`` to ``last_position``, and their Merkle tree (events/merkle.py) has
root ``root``", at ``time``, signed by the key ``key_id``. What is signed is the text
:meth:`Checkpoint.signed_text` (one ``name value`` line each, fixed order), so a third
party can check a checkpoint with nothing but this description, the public key and any
Ed25519 library (docs/audit.md).

Checkpoints are written to the log under ``<prefix>._log.checkpoint`` (the kind
``checkpoint``, which no session event has: readers of sessions step over the subject,
:func:`is_checkpoint_subject`), and to a place outside NATS (events/checkpointer.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from threadline.base.errors import ThreadlineError
from threadline.events.store import CHECKPOINT_KIND, checkpoint_subject, is_checkpoint_subject

__all__ = ["checkpoint_subject", "is_checkpoint_subject"]

_SIGNED_HEADER: Final = "threadline checkpoint v1"


class CheckpointError(ThreadlineError):
    """A key or checkpoint that cannot be used (unreadable, unsigned, untrusted)."""


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True, tag=CHECKPOINT_KIND, tag_field="kind"):
    log: str
    size: int
    root: str  # hex
    first_position: int
    last_position: int
    time: int  # microseconds since the Unix epoch, UTC
    key_id: str
    signature: str = ""  # base64 of the Ed25519 signature over signed_text()

    def signed_text(self) -> bytes:
        lines = [
            _SIGNED_HEADER,
            f"log {self.log}",
            f"size {self.size}",
            f"root {self.root}",
            f"first {self.first_position}",
            f"last {self.last_position}",
            f"time {self.time}",
            f"key {self.key_id}",
        ]
        return ("\n".join(lines) + "\n").encode()


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Checkpoint)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    return _encoder.encode(checkpoint)


def decode_checkpoint(data: bytes) -> Checkpoint:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CheckpointError(f"not a checkpoint: {exc}") from None


# ------------------------------------------------------------------ keys


def key_id(public: Ed25519PublicKey) -> str:
    """A key's id: the first 16 hex digits of SHA-256 over its raw 32 bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


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
        raise CheckpointError(f"cannot read the checkpoint key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} is not an Ed25519 private key")
    return key


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_trusted_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Public keys (PEM files) by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the public key {path}: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise CheckpointError(f"{path} is not an Ed25519 public key")
        keys[key_id(key)] = key
    return keys


# ------------------------------------------------------------------ signing


def sign(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> Checkpoint:
    """``checkpoint`` with ``key_id`` set to ``key``'s and signed by it."""
    unsigned = msgspec.structs.replace(checkpoint, key_id=key_id(key.public_key()), signature="")
    signature = base64.b64encode(key.sign(unsigned.signed_text())).decode()
    return msgspec.structs.replace(unsigned, signature=signature)


def check_signature(checkpoint: Checkpoint, trusted: dict[str, Ed25519PublicKey]) -> str | None:
    """Why ``checkpoint``'s signature is not good (None: signed by a trusted key)."""
    key = trusted.get(checkpoint.key_id)
    if key is None:
        return f"it is signed by key {checkpoint.key_id!r}, which is not a trusted key"
    try:
        key.verify(base64.b64decode(checkpoint.signature, validate=True), checkpoint.signed_text())
    except (InvalidSignature, ValueError):
        return f"its signature does not verify with key {checkpoint.key_id}"
    return None
