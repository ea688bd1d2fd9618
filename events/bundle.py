"""Audit bundles: one session's records with the proof that they are in a signed
checkpoint's tree, checked offline with nothing but the bundle and public keys.

A bundle (docs/audit.md, "Audit bundles", defines it field by field) holds:

- the signed checkpoint (events/checkpoint.py) the proofs hang from;
- every record of the session in stream order, each as its exact stored bytes
  (base64), with its leaf index in the checkpoint's tree and its RFC 9162 inclusion
  proof; records appended after the checkpoint carry neither (``not covered``);
- informational: the checkpoint key and trust policy the exporter knew.
  :func:`verify_bundle` never trusts them: the keys come from the verifier's caller.

:func:`verify_bundle` reuses the one definition of each rule: the checkpoint signature
(:func:`~threadline.events.checkpoint.check_signature`), the inclusion proof
(:func:`~threadline.events.merkle.verify_inclusion`), the leaf hash of a record
(:func:`~threadline.events.merkle.record_leaf`), the hash chain and versions
and the record signatures under a trust policy
(:func:`~threadline.events.verify.verify_session`, which applies
:meth:`~threadline.events.signing.TrustPolicy.check`). It imports nothing that talks to
NATS.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from threadline.base.errors import ThreadlineError
from threadline.events import codec
from threadline.events.checkpoint import Checkpoint, check_signature
from threadline.events.merkle import record_leaf, verify_inclusion
from threadline.events.signing import TrustPolicy
from threadline.events.store import Stored
from threadline.events.verify import verify_session

FORMAT: Final = "threadline audit bundle"
VERSION: Final = 1

#: at most this many problems of one kind are listed (the rest are counted)
_LISTED: Final = 5


class BundleError(ThreadlineError):
    """A bundle that cannot be made or read at all (not one that fails its checks)."""


class BundleRecord(msgspec.Struct, frozen=True, kw_only=True):
    #: the record's stream sequence in the log
    position: int
    #: the subject it was stored under, ``<prefix>.<session>.<kind>``
    subject: str
    #: base64 of the record's exact stored bytes
    record: str
    #: its leaf index in the checkpoint's tree, and its inclusion proof there (hex hashes,
    #: RFC 9162 ``PATH``, bottom first); both None for a record after the checkpoint
    leaf_index: int | None = None
    proof: list[str] | None = None

    @property
    def covered(self) -> bool:
        return self.leaf_index is not None


class Bundle(msgspec.Struct, frozen=True, kw_only=True):
    format: str = FORMAT
    version: int = VERSION
    session: str
    #: the stream the records are from (the checkpoint's ``log``)
    log: str
    #: when it was made, microseconds since the Unix epoch, UTC
    exported_at: int
    checkpoint: Checkpoint
    records: list[BundleRecord]
    #: informational only: what the exporter knew (``checkpoint_keys``: key id -> PEM;
    #: ``trust_policy``: the records' trust policy, events/signing.py)
    trust: dict[str, Any] = msgspec.field(default_factory=dict)


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Bundle)


def encode_bundle(bundle: Bundle) -> bytes:
    return _encoder.encode(bundle) + b"\n"


def decode_bundle(data: bytes) -> Bundle:
    try:
        bundle = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise BundleError(f"not an audit bundle: {exc}") from None
    if bundle.format != FORMAT or bundle.version != VERSION:
        raise BundleError(f"not a {FORMAT} v{VERSION} (format {bundle.format!r} v{bundle.version})")
    return bundle


def record_bytes(record: BundleRecord) -> bytes | None:
    """The stored bytes a bundle entry carries (None: not base64)."""
    try:
        return base64.b64decode(record.record, validate=True)
    except (binascii.Error, ValueError):
        return None


class BundleReport(msgspec.Struct, frozen=True, kw_only=True):
    session: str
    checkpoint: Checkpoint
    records: int
    covered: int
    not_covered: tuple[int, ...]  # stream sequences of the records after the checkpoint
    last_version: int
    head_hash: str
    signatures_checked: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_bundle(
    bundle: Bundle,
    trusted_checkpoint_keys: dict[str, Ed25519PublicKey],
    trust: TrustPolicy | None,
) -> BundleReport:
    """Every check of a bundle, offline: the checkpoint's signature by a trusted key;
    each covered record's inclusion proof against the checkpoint's root; the session's
    hash chain and versions over all its records and, under ``trust`` (the trust policy
    of events/signing.py; None: an unsigned log), each record's signature by a key
    allowed to write it. Problems name what failed and where (stream sequence, version,
    leaf index)."""
    cp = bundle.checkpoint
    problems: list[str] = []
    bad_signature = check_signature(cp, trusted_checkpoint_keys)
    if bad_signature is not None:
        problems.append(f"the checkpoint (of {cp.size} records, root {cp.root}): {bad_signature}")
    if cp.log != bundle.log:
        problems.append(f"the checkpoint is of the log {cp.log!r}, the records of {bundle.log!r}")
    if not bundle.records:
        problems.append(f"the bundle holds no record of session {bundle.session}")
    found = [record_bytes(record) for record in bundle.records]
    unreadable = [r for r, data in zip(bundle.records, found, strict=True) if data is None]
    problems += _listed([f"{_where(r)}: its record is not base64" for r in unreadable])
    datas = [data or b"" for data in found]
    problems += _listed(_order(bundle))
    problems += _listed(_inclusion(bundle, datas))
    chain = await verify_session(bundle.session, _stored(bundle.records, datas), trust=trust)
    by_position = {r.position: (r, d) for r, d in zip(bundle.records, datas, strict=True)}
    problems += _listed([f"{_where(*by_position[p.position])}: {p.reason}" for p in chain.problems])
    return BundleReport(
        session=bundle.session,
        checkpoint=cp,
        records=len(bundle.records),
        covered=sum(r.covered for r in bundle.records),
        not_covered=tuple(r.position for r in bundle.records if not r.covered),
        last_version=chain.last_version,
        head_hash=chain.head_hash,
        signatures_checked=trust is not None,
        problems=tuple(problems),
    )


def _where(record: BundleRecord, data: bytes | None = None) -> str:
    """A record's place, for a message: stream sequence, version, leaf index."""
    version = codec.claimed_version(data, None) if data is not None else None
    parts = [f"stream sequence {record.position}"]
    if version is not None:
        parts.append(f"version {version}")
    if record.leaf_index is not None:
        parts.append(f"leaf {record.leaf_index}")
    return "record at " + ", ".join(parts)


def _order(bundle: Bundle) -> list[str]:
    """Records in stream order, covered ones first, leaf indexes rising and inside the
    checkpoint (and, when its positions are contiguous, matching them)."""
    cp = bundle.checkpoint
    contiguous = cp.last_position - cp.first_position + 1 == cp.size
    problems: list[str] = []
    previous: BundleRecord | None = None
    for record in bundle.records:
        if previous is not None:
            if record.position <= previous.position:
                problems.append(
                    f"record at stream sequence {record.position} follows stream sequence "
                    f"{previous.position}: the records are not in stream order"
                )
            if record.covered and not previous.covered:
                problems.append(
                    f"{_where(record)} is covered by the checkpoint but follows a record "
                    "that is not"
                )
            if (
                record.leaf_index is not None
                and previous.leaf_index is not None
                and record.leaf_index <= previous.leaf_index
            ):
                problems.append(f"{_where(record)}: leaf indexes do not rise")
        if record.leaf_index is not None:
            if not 0 <= record.leaf_index < cp.size:
                problems.append(
                    f"{_where(record)}: no such leaf in the checkpoint's tree of {cp.size}"
                )
            elif contiguous and record.position != cp.first_position + record.leaf_index:
                problems.append(
                    f"{_where(record)}: leaf {record.leaf_index} is stream sequence "
                    f"{cp.first_position + record.leaf_index} in the checkpoint"
                )
        elif record.position <= cp.last_position:
            problems.append(
                f"{_where(record)} is inside the checkpoint (stream sequences "
                f"{cp.first_position}..{cp.last_position}) but carries no inclusion proof"
            )
        previous = record
    return problems


def _inclusion(bundle: Bundle, datas: Sequence[bytes]) -> list[str]:
    """Each covered record's inclusion proof, checked against the checkpoint's root."""
    cp = bundle.checkpoint
    try:
        root = bytes.fromhex(cp.root)
    except ValueError:
        return [f"the checkpoint's root {cp.root!r} is not hex"]
    problems: list[str] = []
    for record, data in zip(bundle.records, datas, strict=True):
        if record.leaf_index is None:
            continue
        try:
            proof = [bytes.fromhex(h) for h in record.proof or []]
        except ValueError:
            problems.append(f"{_where(record, data)}: its inclusion proof is not hex")
            continue
        leaf = record_leaf(codec.record_hash(data))
        if not verify_inclusion(record.leaf_index, cp.size, leaf, proof, root):
            problems.append(
                f"{_where(record, data)}: its inclusion proof does not lead to the "
                "checkpoint's root (the record's bytes, the proof or the root were altered)"
            )
    return problems


async def _stored(records: Sequence[BundleRecord], datas: Sequence[bytes]) -> AsyncIterator[Stored]:
    for record, data in zip(records, datas, strict=True):
        yield Stored(record.position, record.subject, data)


def _listed(problems: list[str]) -> list[str]:
    if len(problems) <= _LISTED:
        return problems
    more = len(problems) - _LISTED
    return [*problems[:_LISTED], f"... and {more} more like it"]
