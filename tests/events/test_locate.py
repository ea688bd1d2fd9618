"""Finding where a session's version is on a stream shared with other sessions
(``events/direct.py`` ``locate``), against stream layouts held in a list."""

from __future__ import annotations

import bisect
import math
import random

import pytest

from threadline.events.direct import locate


class Layout:
    """A stream: the positions of one session's versions among other sessions' records,
    and a probe like a direct get ``next_by_subj`` (counting the calls)."""

    def __init__(self, positions: list[int], *, lag_from: int | None = None) -> None:
        self.positions = positions  # positions[v - 1] is version v's position
        self.lag_from = lag_from  # a replica that holds nothing from here on
        self.probes = 0

    async def probe(self, position: int) -> tuple[int, int] | None:
        self.probes += 1
        index = bisect.bisect_left(self.positions, position)
        if index == len(self.positions):
            return None
        if self.lag_from is not None and self.positions[index] >= self.lag_from:
            return None
        return self.positions[index], index + 1

    def right(self, found: tuple[int, int], version: int) -> bool:
        """Reading after ``found[0]`` misses nothing from ``version`` on, and ``found[1]``
        says how many of the session's records come before it."""
        start, extra = found
        skipped = bisect.bisect_left(self.positions, self.positions[version - 1])
        skipped -= bisect.bisect_right(self.positions, start)
        return start < self.positions[version - 1] and extra == skipped <= 16

    @property
    def head(self) -> tuple[int, int]:
        return self.positions[-1], len(self.positions)


def layout(rng: random.Random, versions: int, gaps: list[int]) -> Layout:
    positions, at = [], 0
    for _ in range(versions):
        at += 1 + rng.choice(gaps)
        positions.append(at)
    return Layout(positions)


LAYOUTS = {
    "contiguous": [0],
    "alternating": [1],
    "busy stream": [0, 3, 40, 200],
    "bursts": [0, 0, 0, 0, 5_000],
    "sparse": [1_000, 20_000],
}


@pytest.mark.parametrize("gaps", LAYOUTS.values(), ids=LAYOUTS.keys())
async def test_every_version_is_found_exactly_in_a_few_probes(gaps: list[int]) -> None:
    rng = random.Random(5)
    stream = layout(rng, 2_000, gaps)
    bound = 2 * math.log2(stream.head[0]) + 4
    worst = 0
    for version in [*range(1, 40), *rng.sample(range(40, 2_001), 200)]:
        stream.probes = 0
        assert stream.right(await locate(stream.probe, version, stream.head), version), version
        worst = max(worst, stream.probes)
    assert worst <= bound


async def test_the_tail_of_a_session_takes_one_or_two_probes() -> None:
    stream = layout(random.Random(1), 10_000, [0, 1, 2])
    for back in range(1, 10):
        stream.probes = 0
        version = 10_000 - back
        assert stream.right(await locate(stream.probe, version, stream.head), version)
        assert stream.probes <= 3


async def test_after_a_position_it_starts_there() -> None:
    stream = layout(random.Random(2), 500, [0, 3, 9])
    for version in range(2, 500, 7):
        just_before = stream.positions[version - 2]
        stream.probes = 0
        found = await locate(stream.probe, version, stream.head, after=just_before)
        assert stream.right(found, version) and found[1] == 0
        assert stream.probes == 1  # the caller's position was right: one probe confirms it
        later = stream.positions[version - 1]  # `after` leaves out the version itself
        assert await locate(stream.probe, version, stream.head, after=later) == (later, 0)


async def test_a_lagging_replica_costs_records_not_correctness() -> None:
    stream = layout(random.Random(3), 1_000, [0, 2, 30])
    stream.lag_from = stream.positions[700]
    for version in range(2, 1_000, 13):
        start, _ = await locate(stream.probe, version, stream.head)
        assert start < stream.positions[version - 1]  # nothing from `version` on is skipped
