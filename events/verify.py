"""Tamper evidence: check a session's hash chain and version sequence.

Works on the stored bytes, so it also reports records that no longer decode (or sit
under another session's or kind's subject). Each
record's ``prev`` must equal the SHA-256 of the record before it (the session's
genesis hash for the first), and versions must run 1, 2, 3... with no gap.
Deleting, rewriting, reordering or moving an event breaks one of these. A truncated
tail is only caught against a head hash recorded elsewhere (``expect_head``). Given the
deployment's trust policy, every record must also carry a valid signature by a key
allowed to write it (events/signing.py): a forged record, even with its chain
recomputed, is named.

Two entry points share the one check (:class:`_Chain`): :func:`verify_session` over
undecoded records (``follow_raw``, the CLI) and :func:`verify_entries` over a store's
:meth:`~threadline.events.store.EventStore.entries` (any store; the gateway's route).
"""

from __future__ import annotations

from collections.abc import AsyncIterable

import msgspec

from threadline.base.errors import CorruptEvent
from threadline.events import codec
from threadline.events.schema import Envelope
from threadline.events.signing import TrustPolicy
from threadline.events.store import (
    SIGNATURE_REASON,
    Quarantined,
    Recorded,
    Stored,
    decode_record,
)


class Problem(msgspec.Struct, frozen=True):
    position: int
    version: int | None
    reason: str


class VerifyReport(msgspec.Struct, frozen=True):
    session: str
    events: int
    head_hash: str
    last_version: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class _Chain:
    """The check, one record at a time, in stream order."""

    def __init__(self, session: str, trust: TrustPolicy | None) -> None:
        self.session = session
        self.trust = trust
        self.prev_hash = codec.genesis_hash(session)
        self.expected_version = 1
        self.count = self.position = 0
        self.problems: list[Problem] = []

    def readable(self, position: int, data: bytes, env: Envelope) -> None:
        self.count, self.position = self.count + 1, position
        if env.version != self.expected_version:
            reason = f"version {env.version}, expected {self.expected_version}"
            self.problems.append(Problem(position, env.version, reason))
        if env.prev != self.prev_hash:
            reason = ("hash chain broken: prev does not match the previous event (an event "
                      "before it was altered, removed or reordered)")  # fmt: skip
            self.problems.append(Problem(position, env.version, reason))
        if self.trust is not None and (why := self.trust.check(data, env, position)) is not None:
            self.problems.append(Problem(position, env.version, SIGNATURE_REASON + why))
        self.prev_hash = codec.record_hash(data)
        self.expected_version = env.version + 1

    def unreadable(self, position: int, data: bytes, reason: str) -> None:
        self.count, self.position = self.count + 1, position
        claimed = codec.claimed_version(data, self.session)
        if not reason.startswith(SIGNATURE_REASON):  # quarantined by a trusting store
            reason = f"cannot be read: {reason}"
        self.problems.append(Problem(position, claimed, reason))
        self.prev_hash = codec.record_hash(data)
        self.expected_version = (claimed or self.expected_version - 1) + 1

    def report(self, expect_head: str | None) -> VerifyReport:
        last_version = self.expected_version - 1
        if expect_head is not None and expect_head != self.prev_hash:
            reason = (f"the head (the last event) hashes to {self.prev_hash}, expected "
                      f"{expect_head}: events were added or removed since that head was "
                      "recorded")  # fmt: skip
            self.problems.append(Problem(self.position, last_version, reason))
        return VerifyReport(
            self.session, self.count, self.prev_hash, last_version, tuple(self.problems)
        )


async def verify_session(
    session: str,
    records: AsyncIterable[Stored],
    *,
    expect_head: str | None = None,
    trust: TrustPolicy | None = None,
) -> VerifyReport:
    """Check the stored records of one session, in stream order (and, with ``trust``,
    their signatures)."""
    chain = _Chain(session, trust)
    async for stored in records:
        try:
            env = decode_record(stored, opened=False).envelope
        except CorruptEvent as exc:
            chain.unreadable(stored.position, stored.data, exc.reason)
            continue
        chain.readable(stored.position, stored.data, env)
    return chain.report(expect_head)


async def verify_entries(
    session: str,
    entries: AsyncIterable[Recorded | Quarantined],
    *,
    expect_head: str | None = None,
    trust: TrustPolicy | None = None,
) -> VerifyReport:
    """The same check over a store's ``entries(session)`` (decoded once by the store;
    quarantined records are the unreadable ones, or the untrusted ones when the store
    reads with a trust policy)."""
    chain = _Chain(session, trust)
    async for entry in entries:
        if isinstance(entry, Quarantined):
            chain.unreadable(entry.position, entry.raw, entry.reason)
        else:
            chain.readable(entry.position, entry.raw, entry.envelope)
    return chain.report(expect_head)
