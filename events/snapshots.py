"""Snapshots of session states: derived data that spares a cold session its replay.

A snapshot is a :class:`~threadline.events.fold.SessionState` encoded with msgspec
(msgpack), with what it was folded to: the session's version, that record's position
and hash. It is only ever a shortcut: :class:`~threadline.events.sessions.SessionCache`
checks it against the log (the record at that version must have that position and
hash) and folds from scratch when it does not match, when it cannot be decoded, or when
the state's shape changed since it was written (:data:`SHAPE`: the fold's rules version
and the state's schema). Losing every snapshot only costs time.

:class:`SnapshotStore` is the port: a JetStream KV bucket in a deployment
(:mod:`threadline.events.kv`), :class:`MemorySnapshots` in tests.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Final, Protocol

import msgspec

from threadline.events.fold import SessionState

#: Bump when the fold's rules change what a state holds for the same events (a change
#: of the state's fields changes :data:`SHAPE` by itself).
FOLD_RULES: Final = 1


def _shape() -> str:
    schema = msgspec.json.encode(msgspec.json.schema(SessionState), order="sorted")
    return hashlib.sha256(b"%d\0" % FOLD_RULES + schema).hexdigest()[:16]


#: what a snapshot's state must have been written as to be read back
SHAPE: Final = _shape()


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    """A state and the record it was folded to; ``state`` is the encoded state,
    compressed (zlib: a state repeats each message's text in a few places)."""

    shape: str
    session: str
    version: int
    position: int
    hash: str
    state: bytes


_encoder: Final = msgspec.msgpack.Encoder()
_snapshot_decoder: Final = msgspec.msgpack.Decoder(Snapshot)
_state_decoder: Final = msgspec.msgpack.Decoder(SessionState)


def encode_snapshot(state: SessionState, hash_: str) -> bytes:
    """``state``, folded up to the record of ``state.version`` whose hash is ``hash_``."""
    body = zlib.compress(_encoder.encode(state), 1)
    return _encoder.encode(
        Snapshot(SHAPE, state.session, state.version, state.position, hash_, body)
    )


def decode_snapshot(session: str, data: bytes) -> Snapshot | None:
    """The snapshot in ``data`` if it is one of ``session`` in today's shape, else None."""
    try:
        snap = _snapshot_decoder.decode(data)
    except msgspec.DecodeError:
        return None
    if snap.shape != SHAPE or snap.session != session or snap.version < 1:
        return None
    return snap


def snapshot_state(snap: Snapshot) -> SessionState | None:
    """The state a snapshot holds (None: undecodable, or not what it claims to be)."""
    try:
        state = _state_decoder.decode(zlib.decompress(snap.state))
    except (msgspec.DecodeError, zlib.error):
        return None
    claimed = (snap.session, snap.version, snap.position)
    return state if (state.session, state.version, state.position) == claimed else None


class SnapshotStore(Protocol):
    """Where snapshots are kept: one per session, the newest."""

    async def open(self) -> None:
        """Get ready to serve loads (a failure is logged and only costs time)."""

    async def load(self, session: str) -> bytes | None:
        """The session's snapshot, None if there is none (or it cannot be read now)."""

    async def save(self, session: str, data: bytes) -> None:
        """Keep ``data`` as the session's snapshot (failing quietly costs only time)."""


class MemorySnapshots:
    """Snapshots in a dict: for tests and tools. ``saved`` counts saves."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.saved = 0

    async def open(self) -> None:
        pass

    async def load(self, session: str) -> bytes | None:
        return self.data.get(session)

    async def save(self, session: str, data: bytes) -> None:
        self.data[session] = data
        self.saved += 1
