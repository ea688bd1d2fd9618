"""Keys, trust policies and an independent check of signed records, for tests."""

from __future__ import annotations

import base64
import hashlib
import json
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from threadline.events.signing import Grant, Signer, TrustedKey, TrustPolicy


def policy(
    **keys: tuple[Ed25519PrivateKey, tuple[str, ...]]
    | tuple[Ed25519PrivateKey, tuple[str, ...], bool],
) -> TrustPolicy:
    """A trust policy: name=(key, actor patterns[, may write copies])."""
    trusted = {}
    for name, (key, actors, *copies) in keys.items():
        grant = Grant(actors, bool(copies and copies[0]))
        trusted[Signer(key).key_id] = TrustedKey(name, key.public_key(), grant)
    return TrustPolicy(trusted)


_SIGNED = re.compile(rb'(.*),"sig":"ed25519:([0-9a-f]{16}):([A-Za-z0-9+/]+=*)"\}', re.S)


def independent_check(stored: bytes, public: Ed25519PublicKey) -> bool:
    """docs/audit.md's rule, implemented apart from events/signing.py: the signature is the
    last member; strip it, check its key id, and the Ed25519 signature over the header
    line and what is left. Raises InvalidSignature when the signature is wrong."""
    found = _SIGNED.fullmatch(stored)
    if found is None:
        return False
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if hashlib.sha256(raw).hexdigest()[:16] != found[2].decode():
        return False
    unsigned = found[1] + b"}"
    members = json.loads(stored)
    if list(members)[-1] != "sig" or json.loads(unsigned) != {
        k: v for k, v in members.items() if k != "sig"
    }:
        return False
    public.verify(base64.b64decode(found[3]), b"threadline event v1\n" + unsigned)
    return True
