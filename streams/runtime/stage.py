"""The stage contract: what a stage implements, and what it is given to be built.

A stage consumes batches of records from its input topics, produces to its output
topics through the producer it is handed, and keeps per-partition state that it writes
to its changelog after its outputs are durable. :mod:`streams.runtime.runner` drives a
stage on Kafka, :mod:`streams.runtime.memory` in memory; both call exactly these
methods. Which topics each stage reads and writes is declared once, in
:mod:`streams.runtime.topology`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from confluent_kafka import TopicPartition

from streams.catalogue.sites import Site
from streams.clinical.clock import now_us
from streams.runtime.metrics import EngineMetrics
from streams.settings import Settings
from streams.state.changelog import ChangelogSource


class InputRecord(Protocol):
    """A consumed record, as confluent-kafka's ``Message`` (and the in-memory driver's) gives it."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class Output(Protocol):
    """Where a stage produces: confluent-kafka's ``Producer`` or the in-memory driver's."""

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                partition: int = -1, **kwargs: Any) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...


class Stage(Protocol):
    """One stage of the topology. Every method is called by the runner; none is optional."""

    name: str
    # Whether the runner tells the stage which input partitions still hold unread records
    # (set_busy_partitions) and pauses the partitions it reports ahead (partitions_ahead):
    # a stage that merges its inputs into event-time order needs both.
    orders_input: bool

    def input_topics(self) -> list[str]: ...

    def assign(self, partitions: list[int]) -> None:
        """Take ownership of input partitions: restore their state."""

    def revoke(self, partitions: list[int]) -> None:
        """Drop the state of partitions another worker takes over."""

    def process(self, messages: list[Any], producer: Any) -> int:
        """Handle one batch, producing outputs and dead letters; return events read."""

    def tick(self, producer: Any) -> int:
        """After every batch and idle poll: time-driven work (coalesced snapshots, feed
        silence). Returns how many records it produced."""

    def checkpoint(self, producer: Any) -> bool:
        """After outputs are durable: write state changes; True if anything was produced."""

    def set_busy_partitions(self, busy: set[int]) -> None:
        """Input partitions known to have unread records (called before every batch when orders_input)."""

    def partitions_ahead(self) -> set[int]:
        """Input partitions to pause: far ahead of the others in event time (when orders_input)."""

    def commit_offsets(self) -> list[TopicPartition] | None:
        """Input positions safe to commit after the checkpoint; None: the consumer's positions."""


@runtime_checkable
class ClosesFollowUp(Protocol):
    """A stage that can close its follow-ups at an event time (the ascertain stage), for a
    report as of that time."""

    def close_at(self, time: int, producer: Any) -> int: ...


@dataclass
class StageContext:
    """What building a stage needs: settings, the network of sites, the pseudonymisation key,
    metrics, where its changelog is read from, how many partitions a topic has, and clocks
    (wall clock in us since the epoch; a monotonic clock in s, for coalescing)."""

    settings: Settings
    sites: dict[str, Site]
    key: bytes
    metrics: EngineMetrics
    changelog: ChangelogSource
    partitions_of: Callable[[str], int]
    wall_us: Callable[[], int] = now_us
    monotonic: Callable[[], float] = time.monotonic
    dev_key: bool = False
