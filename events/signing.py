"""Signed events: who wrote a record, provable with a public key.

Every writer (gateway, agent, CLI) holds its own Ed25519 key; its store signs each record
it appends (:class:`Signer`, used by ``EventStore._seal``). A deployment's
:class:`TrustPolicy` lists the public keys it trusts and which actors each may write;
:meth:`TrustPolicy.check` is the one check every reader applies (``verify``, the agent,
the projector, any store opened with the policy). The rule, exactly (docs/audit.md):

* ``U`` is the record encoded without its signature (``codec.encode_sealed``: the
  envelope's JSON, fields in order, unset ones left out);
* the signature is Ed25519 over ``b"threadline event v1\\n" + U``;
* the stored bytes are ``U[:-1] + b',"sig":"ed25519:<key id>:<base64 signature>"}'``:
  the signature is the envelope's last member, ``sig``;
* a verifier takes the stored bytes, checks they end with ``,"sig":"<value>"}`` and
  replaces that suffix by ``}`` to get ``U`` back: nothing is re-encoded.

The hash chain (``prev``) and the checkpoints' Merkle leaves hash the stored bytes, so
they cover the signatures; the signature covers ``prev``, so it binds the record to its
place in the session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from threadline.base.metrics import default_registry
from threadline.events.keys import (
    KeyFileError,
    ensure_signing_key,
    key_id,
    load_signing_key,
    raw_public,
)
from threadline.events.schema import Envelope

#: what is signed: this line, then the record's bytes without ``sig``
SIGNED_PREFIX: Final = b"threadline event v1\n"
#: the scheme that starts a ``sig`` value: ``ed25519:<key id>:<base64 signature>``
SCHEME: Final = "ed25519"
_MEMBER: Final = b',"sig":"'
_END: Final = b'"}'
#: the trust policy file's format version
POLICY_VERSION: Final = 1
#: records whose signature this process has checked (or made), remembered so that a
#: record read by several readers in one process (gateway, projector, agent's fold) costs
#: one Ed25519 verification, not one each
_VERIFIED_CACHE: Final = 16_384

REJECTED = default_registry().counter(
    "threadline_events_signature_rejected_total",
    "Records refused because they carry no valid signature from a key the trust policy "
    "allows to write them, by who refused them (reader: a store's read, quarantined; "
    "agent: a delivery not acted on).",
    ("by",),
)


class _Verified:
    """Stored bytes known to carry a good signature by a public key (raw bytes): the
    newest :data:`_VERIFIED_CACHE` of them, by their SHA-256 (records may be large),
    shared by every store of the process (the projector checks in a thread, hence the
    lock)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def holds(self, stored: bytes, public: bytes) -> bool:
        digest = hashlib.sha256(stored).digest()
        with self._lock:
            return self._seen.get(digest) == public

    def add(self, stored: bytes, public: bytes) -> None:
        digest = hashlib.sha256(stored).digest()
        with self._lock:
            self._seen[digest] = public
            if len(self._seen) > _VERIFIED_CACHE:
                self._seen.popitem(last=False)


_verified: Final = _Verified()


class Signer:
    """Signs records with one private key (a process's own)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.key_id = key_id(key.public_key())
        self._public = raw_public(key.public_key())
        self._head = f"{SCHEME}:{self.key_id}:"

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        return cls(load_signing_key(path))

    def seal(self, unsigned: bytes) -> tuple[str, bytes]:
        """The ``sig`` value for the record ``unsigned`` (``U``) and its stored bytes,
        signed (and known good to this process's checks: it need not verify its own
        signature)."""
        signature = self.key.sign(SIGNED_PREFIX + unsigned)
        sig = self._head + base64.b64encode(signature).decode("ascii")
        stored = attach(unsigned, sig)
        _verified.add(stored, self._public)
        return sig, stored


def attach(unsigned: bytes, sig: str) -> bytes:
    """The stored bytes: ``U`` with ``sig`` as its last member."""
    return unsigned[:-1] + _MEMBER + sig.encode("ascii") + _END


def detach(stored: bytes) -> tuple[bytes, str] | None:
    """``U`` and the ``sig`` value of stored bytes (None: they end with no ``sig``)."""
    if not stored.endswith(_END):
        return None
    start = stored.rfind(_MEMBER)
    if start < 0:
        return None
    value = stored[start + len(_MEMBER) : -len(_END)]
    if b'"' in value or b"\\" in value:
        return None
    return stored[:start] + b"}", value.decode("ascii", "replace")


@dataclass(frozen=True)
class Grant:
    """What one trusted key may write: records whose actor matches one of ``actors``
    (exact, or a prefix when the pattern ends in ``*``), and, with ``copies``, a fork's
    copies (``copied_from`` set) whatever actor they keep from their source."""

    actors: tuple[str, ...]
    copies: bool = False

    def allows(self, envelope: Envelope) -> bool:
        if self.copies and envelope.copied_from is not None:
            return True
        actor = envelope.actor
        return any(actor.startswith(p[:-1]) if p.endswith("*") else actor == p for p in self.actors)


@dataclass(frozen=True)
class TrustedKey:
    name: str
    public: Ed25519PublicKey
    grant: Grant


class TrustPolicy:
    """The keys a deployment trusts, by key id, and what each may write. Its file is JSON
    (docs/audit.md)::

        {"version": 1, "unsigned_before": 1, "keys": [{"name": "gateway",
          "key_id": "<16 hex>", "public_key": "<base64 of the raw 32-byte public key>",
          "actors": ["user:*", "system"], "copies": true}, ...]}

    ``unsigned_before``: records at stream positions below it may be unsigned (the log a
    deployment had before it signed); a signature they carry is still checked.
    """

    def __init__(self, keys: Mapping[str, TrustedKey], unsigned_before: int = 0) -> None:
        self.keys = dict(keys)
        self.unsigned_before = unsigned_before
        self._raw = {kid: raw_public(key.public) for kid, key in self.keys.items()}

    @classmethod
    def load(cls, path: Path) -> TrustPolicy:
        try:
            return cls.from_json(json.loads(path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read the trust policy {path}: {exc}") from None

    @classmethod
    def from_json(cls, data: Any) -> TrustPolicy:
        """The policy a file's JSON describes (ValueError saying what is wrong)."""
        if not isinstance(data, dict) or data.get("version") != POLICY_VERSION:
            raise ValueError(f'not a trust policy: expected {{"version": {POLICY_VERSION}, ...}}')
        keys: dict[str, TrustedKey] = {}
        for entry in data.get("keys", []):
            public = _public_key(entry.get("public_key", ""))
            kid = key_id(public)
            if entry.get("key_id", kid) != kid:
                raise ValueError(f"key {entry.get('name')!r}: key_id is not its public key's")
            actors = entry.get("actors", [])
            if not isinstance(actors, list) or not all(isinstance(a, str) for a in actors):
                raise ValueError(f"key {entry.get('name')!r}: actors must be a list of strings")
            grant = Grant(tuple(actors), bool(entry.get("copies", False)))
            keys[kid] = TrustedKey(str(entry.get("name", kid)), public, grant)
        before = data.get("unsigned_before", 0)
        if not isinstance(before, int) or isinstance(before, bool) or before < 0:
            raise ValueError("unsigned_before must be a stream position (0: none)")
        return cls(keys, before)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": POLICY_VERSION,
            "unsigned_before": self.unsigned_before,
            "keys": [
                {
                    "name": k.name,
                    "key_id": kid,
                    "public_key": base64.b64encode(raw_public(k.public)).decode(),
                    "actors": list(k.grant.actors),
                    "copies": k.grant.copies,
                }
                for kid, k in self.keys.items()
            ],
        }

    def check(self, stored: bytes, envelope: Envelope, position: int | None = None) -> str | None:
        """Why the record (its stored bytes, decoded as ``envelope``; at stream
        ``position``, when known) may not be trusted: unsigned (unless from before
        ``unsigned_before``), signed by a key the policy does not list, a signature that
        does not verify, or a key not allowed to write its actor. None: it may."""
        parts = detach(stored)
        if parts is None:
            if position is not None and position < self.unsigned_before:
                return None  # written before the deployment signed
            return "it is not signed"
        unsigned, sig = parts
        scheme, _, rest = sig.partition(":")
        kid, _, signature = rest.partition(":")
        if scheme != SCHEME or not kid or not signature:
            return f"its signature {sig[:40]!r} is not ed25519:<key id>:<signature>"
        trusted = self.keys.get(kid)
        if trusted is None:
            return f"it is signed by key {kid}, which the trust policy does not list"
        public = self._raw[kid]
        if not _verified.holds(stored, public):
            try:
                raw_signature = base64.b64decode(signature, validate=True)
                if base64.b64encode(raw_signature).decode("ascii") != signature:
                    raise ValueError("not canonical base64")  # one spelling per signature
                trusted.public.verify(raw_signature, SIGNED_PREFIX + unsigned)
            except (InvalidSignature, binascii.Error, ValueError):
                return f"its signature does not verify with key {kid} ({trusted.name})"
            _verified.add(stored, public)
        if not trusted.grant.allows(envelope):
            what = "a fork's copy" if envelope.copied_from is not None else "a record"
            return f"key {kid} ({trusted.name}) may not write {what} of actor {envelope.actor!r}"
        return None


def _public_key(text: object) -> Ed25519PublicKey:
    if not isinstance(text, str):
        raise ValueError("public_key must be base64 text")
    raw = base64.b64decode(text, validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def ensure_key_set(
    directory: Path, grants: Mapping[str, Grant], policy_file: str, unsigned_before: int = 0
) -> Path:
    """A key per writer (``<directory>/<name>.key``, made when missing) and the trust
    policy naming them (``<directory>/<policy_file>``): made when missing (accepting
    unsigned records below ``unsigned_before``); a key made since (a lost one replaced)
    is added to it, every key it lists is kept (old signatures still verify). Returns
    the policy's path."""
    path = directory / policy_file
    policy = TrustPolicy.load(path) if path.exists() else TrustPolicy({}, unsigned_before)
    keys = dict(policy.keys)
    for name, grant in grants.items():
        public = ensure_signing_key(directory / f"{name}.key").public_key()
        keys.setdefault(key_id(public), TrustedKey(name, public, grant))
    if keys.keys() != policy.keys.keys() or not path.exists():
        fresh = path.with_name(f".{path.name}.{os.getpid()}")
        kept = TrustPolicy(keys, policy.unsigned_before)
        fresh.write_text(json.dumps(kept.to_json(), indent=2) + "\n")
        os.replace(fresh, path)
    return path
