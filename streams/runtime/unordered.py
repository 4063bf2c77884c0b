# mypyc: compiled (the per-event path: setup.py)
"""The stage contract's ordering hooks for a stage that takes its input as it arrives.

Only the normaliser merges its input partitions into event-time order; every other
stage inherits these (compiled, so that the compiled stages can inherit them).
"""

from __future__ import annotations

from confluent_kafka import TopicPartition


class UnorderedInput:
    orders_input = False

    def set_busy_partitions(self, busy: set[int]) -> None:
        """Not needed: the stage does not order its input."""

    def partitions_ahead(self) -> set[int]:
        return set()

    def commit_offsets(self) -> list[TopicPartition] | None:
        return None  # the consumer's positions
