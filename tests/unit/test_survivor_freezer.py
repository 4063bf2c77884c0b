"""The worker's garbage-collector policy: survivors of a round are frozen, cycles still go."""

from __future__ import annotations

import gc
import weakref

from streams.runtime.worker import SurvivorFreezer


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_survivors_are_frozen_and_a_cycle_among_them_goes_at_the_next_full_collection() -> None:
    freezer = SurvivorFreezer()
    try:
        node = Node()
        gone = weakref.ref(node)
        freezer.after_round()
        del node
        gc.collect()
        assert gone() is not None  # frozen: ordinary collections do not look at it
        freezer._full_at = gc.get_freeze_count() - 1  # as if the frozen objects had doubled
        freezer.after_round()
        assert gone() is not None  # they are counted once a minute
        freezer._check_at = 0.0
        freezer.after_round()
        assert gone() is None
        assert freezer._full_at >= 2 * SurvivorFreezer.MIN_FULL
    finally:
        gc.unfreeze()
