"""Tamper evidence: check a session's hash chain and version sequence.

Works on the stored bytes, so it also reports records that no longer decode (or sit
under another session's or kind's subject). Each
record's ``prev`` must equal the SHA-256 of the record before it (the session's
genesis hash for the first), and versions must run 1, 2, 3... with no gap.
Deleting, rewriting, reordering or moving an event breaks one of these. A truncated
tail is only caught against a head hash recorded elsewhere (``expect_head``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable

import msgspec

from threadline.base.errors import CorruptEvent
from threadline.events import codec
from threadline.events.store import Stored, decode_record


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


async def verify_session(
    session: str,
    records: AsyncIterable[Stored],
    *,
    expect_head: str | None = None,
) -> VerifyReport:
    """Check the stored records of one session, in stream order."""
    prev_hash = codec.genesis_hash(session)
    expected_version = 1
    count = position = 0
    problems: list[Problem] = []
    async for stored in records:
        count, position = count + 1, stored.position
        try:
            env = decode_record(stored).envelope
        except CorruptEvent as exc:
            claimed = codec.claimed_version(stored.data, session)
            problems.append(Problem(position, claimed, f"cannot be read: {exc.reason}"))
            prev_hash = codec.record_hash(stored.data)
            expected_version = (claimed or expected_version - 1) + 1
            continue
        if env.version != expected_version:
            reason = f"version {env.version}, expected {expected_version}"
            problems.append(Problem(position, env.version, reason))
        if env.prev != prev_hash:
            reason = ("hash chain broken: prev does not match the previous event (an event "
                      "before it was altered, removed or reordered)")  # fmt: skip
            problems.append(Problem(position, env.version, reason))
        prev_hash = codec.record_hash(stored.data)
        expected_version = env.version + 1
    if expect_head is not None and expect_head != prev_hash:
        reason = (f"the head (the last event) hashes to {prev_hash}, expected {expect_head}: "
                  "events were added or removed since that head was recorded")  # fmt: skip
        problems.append(Problem(position, expected_version - 1, reason))
    return VerifyReport(session, count, prev_hash, expected_version - 1, tuple(problems))
