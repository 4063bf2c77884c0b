"""Batched changelogs: durable per-partition state for batch stages.

Faust's tables write one changelog record per key update, which is what capped a
per-event Faust pipeline near 1-2k events/s. Here a stage writes one record per
input partition per batch (the batch's changes), and from time to time the
partition's whole state: when the deltas written since the last snapshot add up to
as many bytes as that snapshot (at least ``min_snapshot_bytes``). So a restore reads
at most about twice the state, and the cost of snapshots stays proportional to the
changes, however small the batches (a count of batches would snapshot a large state
every few seconds under a trickle of events). Records are keyed
``<partition>-<n>`` with n counting deltas since the last snapshot, so on a
compacted topic the log shrinks to the last snapshot plus the deltas after it:
older deltas that survive compaction sit before the snapshot, which replaces them
on restore. Replay order is offset order, so restore needs no other bookkeeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

log = logging.getLogger(__name__)


class ChangelogSource(Protocol):
    """Reads a changelog partition from its beginning, for a stage's restore."""

    def read(self, topic: str, partition: int) -> Iterator[bytes]: ...


class ChangelogWriter:
    """Writes deltas and snapshots of one state store to its changelog topic."""

    def __init__(self, producer: Producer, topic: str, min_snapshot_bytes: int = 1 << 20) -> None:
        self._producer = producer
        self.topic = topic
        self.min_snapshot_bytes = min_snapshot_bytes
        self._deltas: dict[int, int] = {}          # partition -> delta records since its snapshot
        self._delta_bytes: dict[int, int] = {}     # partition -> their bytes
        self._snapshot_bytes: dict[int, int] = {}  # partition -> bytes of its last snapshot

    def reset(self, partition: int) -> None:
        """Forget a partition's history (after it was restored or revoked): its next write is a snapshot."""
        for counts in (self._deltas, self._delta_bytes, self._snapshot_bytes):
            counts.pop(partition, None)

    def wants_snapshot(self, partition: int) -> bool:
        if partition not in self._snapshot_bytes:
            return True
        return self._delta_bytes[partition] >= max(self._snapshot_bytes[partition], self.min_snapshot_bytes)

    def write_snapshot(self, partition: int, values: list[bytes]) -> None:
        """The whole state, in one or more records (the first replaces everything before it)."""
        for n, value in enumerate(values):
            key = f"{partition}-{n if n else 's'}".encode()
            self._producer.produce(self.topic, value=value, key=key, partition=partition)
        self._deltas[partition] = len(values) - 1
        self._delta_bytes[partition] = 0
        self._snapshot_bytes[partition] = sum(len(v) for v in values)

    def write_delta(self, partition: int, value: bytes) -> None:
        n = self._deltas.get(partition, 0) + 1
        self._producer.produce(self.topic, value=value, key=f"{partition}-{n}".encode(), partition=partition)
        self._deltas[partition] = n
        self._delta_bytes[partition] = self._delta_bytes.get(partition, 0) + len(value)


def read_partition(consumer: Consumer, topic: str, partition: int, idle: float = 0.3,
                   timeout: float = 60.0, start: int = OFFSET_BEGINNING) -> Iterator[Message]:
    """Every record of one partition, from the beginning (or offset ``start``) to the current end.

    Tansu reports a high watermark at the start of the last record batch + 1, not the
    true end, so reaching the watermark is not the end: reading goes on until no
    record arrives for ``idle`` seconds. On Apache Kafka the watermark is exact and the
    extra wait is one idle poll.
    """
    tp = TopicPartition(topic, partition, start)
    low, high = consumer.get_watermark_offsets(tp, timeout=10)
    if high <= max(low, start):
        return
    consumer.assign([tp])
    deadline = time.monotonic() + timeout
    last_offset = -1
    idle_since: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.1)
            records = [m for m in batch if m.error() is None]
            for m in batch:
                err = m.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    log.warning("changelog %s[%d]: %s", topic, partition, err.str())
            if records:
                idle_since = None
                for m in records:
                    last_offset = m.offset() or 0
                    yield m
                continue
            if last_offset >= high - 1:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= idle:
                    return
        raise TimeoutError(f"changelog {topic}[{partition}] not read to its end within {timeout:.0f} s")
    finally:
        consumer.unassign()


class KafkaChangelog:
    """Changelog partitions read from the broker, each with a fresh group-less consumer."""

    def __init__(self, consumer_factory: Callable[[], Consumer]) -> None:
        self._consumer_factory = consumer_factory

    def read(self, topic: str, partition: int) -> Iterator[bytes]:
        consumer = self._consumer_factory()
        try:
            for message in read_partition(consumer, topic, partition):
                value = message.value()
                if value is not None:
                    yield value
        finally:
            consumer.close()
