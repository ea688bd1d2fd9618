"""Crypto-shredding: personal content sealed per data subject, erased by destroying a key.

Each event's personal fields (the one table of them is :data:`PERSONAL`) are sealed
before the record is encoded, hashed and signed: the stored envelope keeps the typed
event with those fields replaced by :data:`ERASED` (its *stub*), and carries
``sealed``: AES-256-GCM of the whole event's JSON under the content key of the
session's owner for the month the record was written, the additional data binding it
to its session, version and kind. The hash chain and checkpoints cover the ciphertext,
so they still verify once the key is gone; then every reader gets the stub.

Keys live in a :class:`KeyStore` (the port): :class:`DirectoryKeyStore` keeps one file
per key under the data dir and erases by unlinking it (and fsyncing the directory).
A :class:`Keyring` caches keys per process; :meth:`Keyring.forget` drops erased ones
(every process follows the log's erasure records, :mod:`threadline.events.erasure`).
Derived data that holds folded content (snapshots, the sessions directory) is sealed
with :meth:`Keyring.seal_blob` under the key of the session's first month, so erasing
the owner, or every month up to a later one, makes it unreadable too.
docs/audit.md#erasure says why and how.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from threadline.events import schema as ev
from threadline.events.schema import Sealed

#: what an erased (or not readable here) personal field shows, everywhere
ERASED: Final = "[erased]"

_Stub = Callable[[Any], Any]


def _text(value: str) -> str:
    return ERASED if value else value


def _mapping(value: dict[str, Any]) -> dict[str, Any]:
    return {ERASED: True} if value else value


def _calls(value: tuple[ev.ToolCallRef, ...]) -> tuple[ev.ToolCallRef, ...]:
    return tuple(msgspec.structs.replace(c, arguments=_mapping(c.arguments)) for c in value)


def _dropped(value: dict[str, Any]) -> dict[str, Any]:
    return {}


#: The personal fields of each kind and what each shows once erased: the one table of
#: them. Kinds not named carry none (ids, counts, providers, models, timings, flags).
PERSONAL: Final[dict[type[Any], dict[str, _Stub]]] = {
    ev.SessionStarted: {"title": _text, "system_prompt": _text},
    ev.SessionRenamed: {"title": _text},
    ev.UserMessage: {"text": _text},
    ev.TextDelta: {"text": _text},
    ev.ReasoningDelta: {"text": _text},
    ev.ToolCall: {"arguments": _mapping},
    ev.ToolResult: {"content": _text, "summary": _text},
    ev.ToolProgress: {"message": _text},
    ev.Fallback: {"reason": _text},
    ev.AssistantMessage: {
        "text": _text,
        "reasoning": _text,
        "tool_calls": _calls,
        "provider_data": _dropped,
    },
    ev.TurnFailed: {"message": _text},
    ev.CancelRequested: {"reason": _text},
    ev.TurnCancelled: {"partial_text": _text, "reason": _text},
    ev.ApprovalRequested: {"arguments": _mapping},
    ev.ApprovalGranted: {"reason": _text},
    ev.ApprovalDenied: {"reason": _text},
}


def stub(event: ev.Event) -> ev.Event | None:
    """The event with its personal fields erased; None when it has none to seal."""
    fields = PERSONAL.get(type(event))
    if not fields:
        return None
    changes = {name: erase(getattr(event, name)) for name, erase in fields.items()}
    if all(changes[name] == getattr(event, name) for name in changes):
        return None  # every personal field empty: nothing to seal
    return msgspec.structs.replace(event, **changes)


def period_of(at_us: int) -> str:
    """The retention period of a time (microseconds since the epoch): its UTC month."""
    return time.strftime("%Y-%m", time.gmtime(at_us / 1e6))


def record_aad(session: str, version: int, kind: str) -> bytes:
    """What a record's ciphertext is bound to (it cannot be moved to another record)."""
    return f"threadline record\0{session}\0{version}\0{kind}".encode()


# ----------------------------------------------------------------------------- keys


class ContentKey(NamedTuple):
    """A content key: its id (in records and erasure records; names no one) and bytes."""

    id: str
    secret: bytes


class StoredKey(msgspec.Struct, frozen=True):
    """A key file's content: whose, which month, and the key (hex)."""

    owner: str
    period: str
    key: str


class KeyStore(Protocol):
    """Where content keys live. Methods are blocking (callers use a thread for them);
    ``erase`` must really delete: once it returns, the key is nowhere in the store."""

    def get_or_create(self, owner: str, period: str) -> ContentKey:
        """The live key of ``owner`` for ``period``, made when there is none (a new
        one, with a new id, when that owner's key for the period was erased)."""

    def load(self, key_id: str) -> bytes | None:
        """The key with that id; None once it is erased (or never existed)."""

    def erase(self, *, owner: str | None = None, before: str | None = None) -> list[str]:
        """Destroy the keys of ``owner`` and/or of the periods before ``before``
        (``YYYY-MM``); the ids destroyed."""


def _matches(key: StoredKey, owner: str | None, before: str | None) -> bool:
    if owner is None and before is None:
        raise ValueError("an erasure names an owner, a period, or both")
    return (owner is None or key.owner == owner) and (before is None or key.period < before)


def _key_ids(secret: bytes, owner: str, period: str) -> Iterator[str]:
    """The ids the key of (owner, period) takes, one per generation: keyed by a secret of
    the store, so an id names no one to whoever lacks the store."""
    generation = 0
    while True:
        message = f"{owner}\0{period}\0{generation}".encode()
        yield hmac.new(secret, message, hashlib.sha256).hexdigest()[:24]
        generation += 1


_SECRET_FILE: Final = "key-ids.secret"
_decoder: Final = msgspec.json.Decoder(StoredKey)


class DirectoryKeyStore:
    """One file per key, ``<dir>/<id>.key`` (owner, month, key; mode 0600 in a 0700
    directory); erasing unlinks it, leaves an empty ``<id>.erased`` (so the owner's next
    key for that month gets a new id) and fsyncs the directory. Files are written whole
    and linked into place, so processes sharing the directory never see half a key and
    agree on one key per owner and month."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._secret: bytes | None = None

    def _id_secret(self) -> bytes:
        if self._secret is None:
            if not self.path.is_dir():  # the first key: the directory is made owner-only
                self.path.mkdir(parents=True, exist_ok=True)
                self.path.chmod(0o700)
            path = self.path / _SECRET_FILE
            if not path.exists():
                self._link_new(path, secrets.token_hex(32).encode())
            self._secret = bytes.fromhex(path.read_text().strip())
        return self._secret

    def _link_new(self, path: Path, data: bytes) -> None:
        """Write ``path`` whole unless it exists (another process may make it first)."""
        fresh = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(fresh, path)
        fresh.unlink()
        self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get_or_create(self, owner: str, period: str) -> ContentKey:
        for key_id in _key_ids(self._id_secret(), owner, period):
            if (self.path / f"{key_id}.erased").exists():
                continue
            path = self.path / f"{key_id}.key"
            if not path.exists():
                record = StoredKey(owner, period, os.urandom(32).hex())
                self._link_new(path, msgspec.json.encode(record))
            secret = self.load(key_id)
            if secret is not None:
                return ContentKey(key_id, secret)
        raise AssertionError("unreachable")  # pragma: no cover

    def load(self, key_id: str) -> bytes | None:
        try:
            return bytes.fromhex(_decoder.decode((self.path / f"{key_id}.key").read_bytes()).key)
        except (OSError, msgspec.DecodeError, ValueError):
            return None

    def erase(self, *, owner: str | None = None, before: str | None = None) -> list[str]:
        if not self.path.is_dir():
            return []
        gone = []
        for path in sorted(self.path.glob("*.key")):
            try:
                key = _decoder.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                continue
            if _matches(key, owner, before):
                (self.path / f"{path.stem}.erased").touch(mode=0o600)
                path.unlink()
                gone.append(path.stem)
        self._sync_dir()
        return gone


# ----------------------------------------------------------------------------- keyring


class Keyring:
    """A process's view of the key store: keys cached in memory; sealing on append,
    opening on read. ``enabled`` False: nothing new is sealed (what is sealed still
    opens). ``on_forget`` callbacks run with the ids of keys erased (derived data that
    holds content drops it)."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.enabled = True
        self._aead: dict[str, AESGCM | None] = {}  # None: erased
        self._writing: dict[tuple[str, str], tuple[str, AESGCM]] = {}
        self.on_forget: list[Callable[[list[str]], None]] = []

    async def writer_key(self, owner: str, at_us: int) -> tuple[str, AESGCM]:
        """The key new content of ``owner`` written at ``at_us`` is sealed with."""
        slot = (owner, period_of(at_us))
        found = self._writing.get(slot)
        if found is None:
            key = await asyncio.to_thread(self.store.get_or_create, *slot)
            found = self._writing[slot] = (key.id, AESGCM(key.secret))
            self._aead[key.id] = found[1]
        return found

    def reader_key(self, key_id: str) -> AESGCM | None:
        """The key with that id (None: erased, or not in this store). A key this process
        has not seen yet is read once from the store (a small blocking read, once per
        key per process; every later read of its records is a dict lookup)."""
        if key_id in self._aead:
            return self._aead[key_id]
        secret = self.store.load(key_id)
        aead = self._aead[key_id] = None if secret is None else AESGCM(secret)
        return aead

    def forget(self, key_ids: list[str]) -> None:
        """Drop erased keys from the cache (what they sealed reads as erased from now on)."""
        erased = set(key_ids)
        if not erased:
            return
        self._aead.update(dict.fromkeys(erased))
        self._writing = {slot: key for slot, key in self._writing.items() if key[0] not in erased}
        for callback in (*self.on_forget, *_erasure_listeners):
            callback(sorted(erased))

    async def erase(self, *, owner: str | None = None, before: str | None = None) -> list[str]:
        """Destroy keys in the store and forget them here; the ids destroyed."""
        gone = await asyncio.to_thread(self.store.erase, owner=owner, before=before)
        self.forget(gone)
        return gone

    # ---------------------------------------------------------------- records

    def seal(
        self, event: ev.Event, body: bytes, key: tuple[str, AESGCM], aad: bytes
    ) -> tuple[bytes, Sealed] | None:
        """The stub's bytes and the sealed content; None when the event has no content."""
        erased = stub(event)
        if erased is None:
            return None
        nonce = os.urandom(12)
        return _encode(erased), Sealed(key[0], nonce, key[1].encrypt(nonce, body, aad))

    def open(self, envelope: ev.Envelope) -> ev.Envelope:
        """The envelope with its event's content, if its key is here; else as stored."""
        sealed = envelope.sealed
        if sealed is None:
            return envelope
        aead = self.reader_key(sealed.key)
        if aead is None:
            return envelope
        aad = record_aad(envelope.session, envelope.version, ev.kind_of(envelope.event))
        try:
            event = _event_decoder.decode(aead.decrypt(sealed.nonce, sealed.ct, aad))
        except (InvalidTag, msgspec.DecodeError):
            return envelope  # not what was sealed for this record: shown as erased
        if type(event) is not type(envelope.event):
            return envelope
        return msgspec.structs.replace(envelope, event=event)

    # ---------------------------------------------------------------- derived data

    async def seal_blob(self, owner: str, since_us: int, data: bytes, aad: bytes) -> bytes:
        """``data`` sealed under ``owner``'s key of the month ``since_us`` falls in (for
        derived data: the session's first month, the oldest content it can hold)."""
        if not self.enabled:
            return data
        key_id, aead = await self.writer_key(owner, since_us)
        nonce = os.urandom(12)
        return _BLOB + _blob_encoder.encode(Sealed(key_id, nonce, aead.encrypt(nonce, data, aad)))

    def open_blob(self, data: bytes, aad: bytes, *, sealed_only: bool = False) -> bytes | None:
        """What :meth:`seal_blob` sealed (None: its key is erased, or it is not one);
        data that was never sealed comes back as it is, unless ``sealed_only``."""
        if not data.startswith(_BLOB):
            return None if sealed_only else data
        try:
            sealed = _blob_decoder.decode(data[len(_BLOB) :])
        except msgspec.DecodeError:
            return None
        aead = self.reader_key(sealed.key)
        if aead is None:
            return None
        try:
            return aead.decrypt(sealed.nonce, sealed.ct, aad)
        except InvalidTag:
            return None


_encode: Final = msgspec.json.Encoder().encode
_event_decoder: Final = msgspec.json.Decoder(ev.Event)
#: how sealed derived data starts (msgpack of a :class:`Sealed` follows)
_BLOB: Final = b"\xfftl-sealed1"
_blob_encoder: Final = msgspec.msgpack.Encoder()
_blob_decoder: Final = msgspec.msgpack.Decoder(Sealed)

# ----------------------------------------------------------------------------- process

_installed: Keyring | None = None
_erasure_listeners: list[Callable[[list[str]], None]] = []


def on_erasure(callback: Callable[[list[str]], None]) -> None:
    """Call ``callback`` with the ids of the keys any keyring of this process forgets
    (what holds folded content drops it: session caches)."""
    _erasure_listeners.append(callback)


def install(keyring: Keyring | None) -> Keyring | None:
    """Make ``keyring`` the process's (readers without one of their own use it); the
    one it replaces."""
    global _installed
    previous, _installed = _installed, keyring
    return previous


def installed() -> Keyring | None:
    return _installed


def open_envelope(envelope: ev.Envelope, keyring: Keyring | None = None) -> ev.Envelope:
    """``envelope`` opened with ``keyring`` (default: the process's), if it is sealed."""
    if envelope.sealed is None:
        return envelope
    keys = keyring or _installed
    return envelope if keys is None else keys.open(envelope)


def describe(store: KeyStore) -> str:
    """Where keys are kept, for messages."""
    return str(store.path) if isinstance(store, DirectoryKeyStore) else type(store).__name__
