# mypyc: compiled (the per-event path: setup.py)
"""Merging input partitions into event-time order (pure logic).

A consumer drains partitions unevenly: with a backlog (a replay, a backfill, a worker
catching up) it may read weeks of one partition's events before another's, and an Avro
container from one site can itself span weeks. Published in arrival order, such
events reach the downstream per-patient partitions out of event-time order, and the
ascertain stage would count them as late. The merge holds events back until no busy
input partition (one with unread records) can still deliver anything older: it
releases events up to the *frontier*, the newest event time of the slowest busy
partition. A partition that is caught up holds nothing back, so in live operation
every event is released in the batch it arrived in.

Offsets are committed only behind held events, so a restart re-reads them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class EventTimeMerge(Generic[T]):
    """Held items of several partitions, released in event-time order."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, int, Any]] = []  # (time, seq, partition, offset, item)
        self._seq = itertools.count()
        self.newest: dict[int, int] = {}           # partition -> newest event time read
        self._read_to: dict[int, int] = {}         # partition -> offset after the last message read
        self._held: dict[int, dict[int, int]] = {}  # partition -> held items per message offset

    def __len__(self) -> int:
        return len(self._heap)

    def read(self, partition: int, offset: int) -> None:
        """A message of ``partition`` at ``offset`` was read (whatever it held)."""
        self._read_to[partition] = max(self._read_to.get(partition, 0), offset + 1)

    def hold(self, partition: int, offset: int, time: int, item: T) -> None:
        heapq.heappush(self._heap, (time, next(self._seq), partition, offset, item))
        held = self._held.get(partition)
        if held is None:
            held = self._held[partition] = {}
        held[offset] = held.get(offset, 0) + 1
        newest = self.newest.get(partition)
        if newest is None or time > newest:
            self.newest[partition] = time

    def frontier(self, busy: set[int]) -> float:
        """Newest event time every busy partition has reached (+inf when none is busy).

        A busy partition never read yet could hold anything: it stops every release. One
        read but without a single event time (all its records rejected) holds nothing back.
        """
        limits = []
        for p in busy:
            if p not in self._read_to:
                return -math.inf
            if p in self.newest:
                limits.append(self.newest[p])
        return min(limits, default=math.inf)

    def release(self, busy: set[int]) -> list[T]:
        """Items no busy partition can still precede, oldest first."""
        limit = self.frontier(busy)
        out: list[T] = []
        heap = self._heap
        while heap and heap[0][0] <= limit:
            _time, _seq, partition, offset, item = heapq.heappop(heap)
            held = self._held[partition]
            held[offset] -= 1
            if not held[offset]:
                del held[offset]
            out.append(item)
        return out

    def commit_offsets(self) -> dict[int, int]:
        """Per partition, the offset to commit: the first message with a held item, or
        the one after the last message read."""
        return {p: min(self._held[p]) if self._held.get(p) else end for p, end in self._read_to.items()}

    def ahead(self, busy: set[int]) -> set[int]:
        """Partitions that are ahead of the frontier: pausing them lets the slow ones catch up."""
        limit = self.frontier(busy)
        return {p for p, newest in self.newest.items() if newest > limit}

    def forget(self, partitions: list[int]) -> None:
        """Drop what revoked partitions held: their new owner re-reads it (never committed)."""
        gone = set(partitions)
        self._heap = [entry for entry in self._heap if entry[2] not in gone]
        heapq.heapify(self._heap)
        for p in gone:
            self._held.pop(p, None)
            self._read_to.pop(p, None)
            self.newest.pop(p, None)
