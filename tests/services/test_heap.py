"""A service settles its heap once up: start-up's objects frozen, young collections
less often (services/runtime/heap.py)."""

from __future__ import annotations

import gc

from threadline.services.runtime import heap


def test_settle_freezes_start_up_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    kept = [[object()] for _ in range(100)]  # built at "start-up", alive afterwards
    try:
        heap.settle()
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
