"""Tamper evidence: check a session's hash chain and version sequence.

Works on the stored bytes, so it also reports records that no longer decode. Each
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
    records: AsyncIterable[tuple[int, bytes]],
    *,
    expect_head: str | None = None,
) -> VerifyReport:
    """Check ``(position, stored bytes)`` pairs of one session, in stream order."""
    prev_hash = codec.genesis_hash(session)
    expected_version = 1
    count = 0
    problems: list[Problem] = []
    async for position, data in records:
        count += 1
        try:
            env = codec.decode(data, position)
        except CorruptEvent as exc:
            problems.append(Problem(position, None, f"does not decode: {exc.reason}"))
            prev_hash = codec.record_hash(data)
            expected_version += 1
            continue
        if env.session != session:
            problems.append(Problem(position, env.version, f"belongs to session {env.session!r}"))
        if env.version != expected_version:
            problems.append(
                Problem(
                    position, env.version, f"version {env.version}, expected {expected_version}"
                )
            )
        if env.prev != prev_hash:
            problems.append(
                Problem(
                    position,
                    env.version,
                    "hash chain broken: prev does not match the "
                    "previous event (an event before it was altered, removed or reordered)",
                )
            )
        prev_hash = codec.record_hash(data)
        expected_version = env.version + 1
    if expect_head is not None and expect_head != prev_hash:
        problems.append(Problem(0, None, "head hash differs from the expected one"))
    return VerifyReport(session, count, prev_hash, expected_version - 1, tuple(problems))
