"""Per-partition state of a batch stage, persisted through its batched changelog.

Every stateful stage keeps one store per input partition (the normaliser's dedupe
store, the ascertain stage's outcome tracker, the aggregate stage's rolling state).
This is the one place that restores a store when its partition is assigned, drops it
when revoked, and writes each batch's changes (or, when the changes since the last
snapshot outweigh it, the whole store) to the changelog after the stage's outputs are
durable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import Producer

from streams.runtime.metrics import EngineMetrics
from streams.state.changelog import ChangelogSource, ChangelogWriter
from streams.wire import formats as wire

log = logging.getLogger(__name__)


class StateStore(Protocol):
    def take_delta(self) -> list[dict[str, Any]]:
        """Changelog records of what changed since the last call (empty: nothing)."""

    def snapshot(self) -> list[dict[str, Any]]:
        """The whole store as changelog records, the first with ``snapshot`` true."""

    def apply(self, record: dict[str, Any]) -> None:
        """Replay one changelog record."""

    def restored(self) -> None:
        """Called once after the last record is replayed."""

    def __len__(self) -> int: ...


S = TypeVar("S", bound=StateStore)


class PartitionedState(Generic[S]):
    """The stores of one stage, by input partition."""

    def __init__(self, stage: str, changelog_topic: str, delta_schema: str, factory: Callable[[], S],
                 changelog: ChangelogSource, metrics: EngineMetrics) -> None:
        self.stage = stage
        self.changelog_topic = changelog_topic
        self.factory = factory
        self._changelog = changelog
        self._metrics = metrics
        self._stores: dict[int, S] = {}
        self._writer: ChangelogWriter | None = None
        self._encoder = wire.Encoder(delta_schema)
        self._decoder = wire.Decoder(delta_schema)

    def __iter__(self) -> Iterator[tuple[int, S]]:
        return iter(list(self._stores.items()))

    def __len__(self) -> int:
        return len(self._stores)

    def get(self, partition: int) -> S:
        store = self._stores.get(partition)
        if store is None:  # assigned without a rebalance callback (manual assign)
            store = self._stores[partition] = self.factory()
        return store

    def assign(self, partitions: list[int]) -> None:
        for p in partitions:
            store = self.factory()
            n = 0
            for value in self._changelog.read(self.changelog_topic, p):
                store.apply(self._decoder.decode(value)[0])
                n += 1
            store.restored()
            self._stores[p] = store
            if self._writer is not None:
                self._writer.reset(p)
            self._metrics.restored_records.labels(self.stage).inc(n)
            # An empty changelog (a new deployment, rwe evaluate's in-memory stages) is no news.
            log.log(logging.INFO if n else logging.DEBUG,
                    "%s: partition %d restored from %d changelog records (%d entries)", self.stage, p, n,
                    len(store))
        self._metrics.state_entries.labels(self.stage).set(self.entries())

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self._stores.pop(p, None)
            if self._writer is not None:
                self._writer.reset(p)

    def checkpoint(self, producer: Producer) -> bool:
        """Write every store's changes; True if anything was produced."""
        if self._writer is None:
            self._writer = ChangelogWriter(producer, self.changelog_topic)
        wrote = False
        for partition, store in self._stores.items():
            records = store.take_delta()
            if not records:
                continue
            if self._writer.wants_snapshot(partition):
                self._writer.write_snapshot(partition, [self._encoder.encode(r) for r in store.snapshot()])
            else:
                for record in records:
                    self._writer.write_delta(partition, self._encoder.encode(record))
            wrote = True
        self._metrics.state_entries.labels(self.stage).set(self.entries())
        return wrote

    def entries(self) -> int:
        return sum(len(s) for s in self._stores.values())
