"""Signed checkpoints: a tree head over the whole log, signed with Ed25519.

A checkpoint says "the log ``log`` held ``size`` records, stream positions
``first_position`` to ``last_position``, and their Merkle tree (events/merkle.py) has
root ``root``", at ``time``, signed by the key ``key_id``. What is signed is the text
:meth:`Checkpoint.signed_text` (one ``name value`` line each, fixed order), so a third
party can check a checkpoint with nothing but this description, the public key and any
Ed25519 library (docs/audit.md).

Checkpoints are written to the log under ``<prefix>._log.checkpoint`` (the kind
``checkpoint``, which no session event has: readers of sessions step over the subject,
:func:`~threadline.events.store.is_checkpoint_subject`), and to a place outside NATS
(events/checkpointer.py).
"""

from __future__ import annotations

import base64
from typing import Final

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from threadline.base.errors import ThreadlineError
from threadline.events.keys import key_id
from threadline.events.store import CHECKPOINT_KIND

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
