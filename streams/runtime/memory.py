"""The topology without a broker: stages driven in memory, for tests and profiling.

In the spirit of Kafka Streams' ``TopologyTestDriver`` and bytewax's testing module:
records are piped into a topic, :meth:`InMemoryDriver.run` drives every stage of the
topology (or of a subset) the way :func:`streams.runtime.runner.run_round` does on Kafka
(process, tick, then checkpoint, one batch per stage per round), and every topic can be
read back, dead letters included. Keyed records are partitioned with Kafka's murmur2,
as the producers the runner configures do. Time is a :class:`ManualClock`:
:meth:`InMemoryDriver.advance` moves it. :meth:`InMemoryDriver.restart` builds the
stages afresh and restores them from their changelogs, as after a crash.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.catalogue.sites import load_sites
from streams.runtime import topics
from streams.runtime.metrics import EngineMetrics
from streams.runtime.partitioning import partition_for
from streams.runtime.stage import Stage, StageContext
from streams.runtime.topology import STAGES, build_stage
from streams.settings import Settings
from streams.vocabulary.time import SECOND_US
from streams.wire import formats as wire
from streams.wire import schemas


@dataclass(frozen=True, slots=True)
class MemoryMessage:
    """A record on an in-memory topic, with the accessors of confluent-kafka's ``Message``."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _timestamp_ms: int

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return 1, self._timestamp_ms  # TIMESTAMP_CREATE_TIME

    def error(self) -> None:
        return None


@dataclass
class ManualClock:
    """Wall clock (us since the epoch) and monotonic clock (s) that move only when told."""

    now_us: int = 1_767_225_600_000_000  # 2026-01-01T00:00Z
    monotonic_s: float = 1_000.0

    def wall_us(self) -> int:
        return self.now_us

    def monotonic(self) -> float:
        return self.monotonic_s

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * SECOND_US)
        self.monotonic_s += seconds


@dataclass
class MemoryTopics:
    """Topics by full name, each a list of partitions of records; created on first use."""

    partitions: int
    clock: ManualClock
    logs: dict[str, list[list[MemoryMessage]]] = field(default_factory=dict)

    def log(self, topic: str) -> list[list[MemoryMessage]]:
        found = self.logs.get(topic)
        if found is None:
            found = self.logs[topic] = [[] for _ in range(self.partitions)]
        return found

    def append(self, topic: str, value: bytes | None, key: bytes | None, partition: int) -> None:
        log = self.log(topic)
        if partition < 0:
            partition = partition_for(key, self.partitions) if key is not None else 0
        records = log[partition]
        records.append(MemoryMessage(topic, partition, len(records), key, value, self.clock.now_us // 1000))

    def read(self, topic: str, partition: int) -> Iterator[bytes]:
        """A changelog partition's values in order (the :class:`ChangelogSource` of a restore)."""
        for message in self.log(topic)[partition]:
            if message.value() is not None:
                yield message.value() or b""


class MemoryProducer:
    """A producer onto :class:`MemoryTopics`: what a stage is handed instead of confluent-kafka's."""

    def __init__(self, topics_: MemoryTopics) -> None:
        self._topics = topics_
        self.stage = ""  # who is producing: the driver sets it before each stage's turn
        self.written: dict[str, set[str]] = {}  # stage -> topics it produced to

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int = -1,
                **_: Any) -> None:
        self._topics.append(topic, value, key, partition)
        self.written.setdefault(self.stage, set()).add(topic)

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        return 0


class InMemoryDriver:
    """Stages of the topology on in-memory topics, every partition assigned to this one driver."""

    def __init__(self, settings: Settings, stages: Sequence[str] = STAGES, clock: ManualClock | None = None) -> None:
        self.settings = settings
        self.stage_names = tuple(stages)
        self.clock = clock or ManualClock()
        self.topics = MemoryTopics(settings.partitions, self.clock)
        self.producer = MemoryProducer(self.topics)
        self._build()

    def _build(self) -> None:
        sites = load_sites(self.settings.sites_file)
        key, dev_key = self.settings.resolve_key()
        self.context = StageContext(self.settings, sites, key, EngineMetrics(sites=sites), self.topics,
                                    lambda _topic: self.settings.partitions, self.clock.wall_us, self.clock.monotonic,
                                    dev_key=dev_key)
        self.stages: dict[str, Stage] = {name: build_stage(name, self.context) for name in self.stage_names}
        self._positions: dict[tuple[str, str, int], int] = {}  # (stage, topic, partition) -> next offset
        self._committed: dict[tuple[str, str, int], int] = {}  # what a restart resumes from
        self._paused: dict[str, set[int]] = {}  # stage -> input partitions it asked to pause (far ahead)
        every = list(range(self.settings.partitions))
        for stage in self.stages.values():
            stage.assign(every)

    # --- input ---------------------------------------------------------------
    def pipe(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int = -1) -> None:
        """Append a record to ``topic`` (its name without the prefix, e.g. ``events.raw``)."""
        self.topics.append(self.settings.topic(topic), value, key, partition)

    def pipe_events(self, events: Sequence[dict[str, Any]]) -> None:
        """ClinicalEvents onto the raw topic, single-object Avro keyed by site (as producers should)."""
        encoder = wire.Encoder(schemas.CLINICAL_EVENT)
        for event in events:
            self.pipe(topics.RAW, encoder.encode(event), str(event.get("site_id")).encode())

    # --- driving -------------------------------------------------------------
    def run(self, max_rounds: int = 1_000_000) -> int:
        """Rounds until no stage reads or produces anything; returns the events the stages read.
        Snapshots the aggregate stage coalesces go out when the clock moves (:meth:`advance`)."""
        events = 0
        for _ in range(max_rounds):
            read, busy = self._round()
            events += read
            if not busy:
                return events
        raise RuntimeError(f"the topology did not settle within {max_rounds} rounds")

    def advance(self, seconds: float) -> int:
        """Move both clocks, then :meth:`run`."""
        self.clock.advance(seconds)
        return self.run()

    def restart(self, from_committed: bool = True) -> None:
        """New stages restored from their changelogs, as after a crash: they read on from the
        positions committed at their last checkpoint (behind what an ordering stage still
        held), or with ``from_committed=False`` from the beginning, as after offsets lost."""
        committed = self._committed if from_committed else {}
        for stage in self.stages.values():
            stage.revoke(list(range(self.settings.partitions)))
        self._build()
        self._positions = dict(committed)
        self._committed = dict(committed)

    def _round(self) -> tuple[int, bool]:
        read = 0
        active = []
        for name, stage in self.stages.items():
            self.producer.stage = name
            batch = self._take(name, stage)
            if stage.orders_input:
                stage.set_busy_partitions(self._unread_partitions(name, stage))
            events = stage.process(batch, self.producer) if batch else 0
            ticked = stage.tick(self.producer)
            if stage.orders_input:  # as the runner paces: what the merge holds stays bounded
                self._paused[name] = stage.partitions_ahead()
            read += events
            if batch or ticked:
                active.append(stage)
        for stage in active:
            self.producer.stage = stage.name
            stage.checkpoint(self.producer)
            self._commit(stage)
        return read, bool(active)

    def _commit(self, stage: Stage) -> None:
        """What the runner would commit after this checkpoint (its outputs and state are durable here)."""
        held = stage.commit_offsets()
        if held is None:
            self._committed.update({k: v for k, v in self._positions.items() if k[0] == stage.name})
        else:
            self._committed.update({(stage.name, tp.topic, tp.partition): tp.offset for tp in held})

    def _take(self, name: str, stage: Stage) -> list[MemoryMessage]:
        """Up to a batch of unread records, interleaved across the stage's input partitions."""
        paused = self._paused.get(name, set())
        queues = [(records, self._positions.get((name, topic, partition), 0))
                  for topic in stage.input_topics() for partition, records in enumerate(self.topics.log(topic))
                  if partition not in paused]
        queues = [(records, start) for records, start in queues if start < len(records)]
        batch: list[MemoryMessage] = []
        limit = self.settings.batch_size
        step = 0
        while queues and len(batch) < limit:
            for records, start in queues:
                if len(batch) < limit:
                    batch.append(records[start + step])
            step += 1
            queues = [(records, start) for records, start in queues if start + step < len(records)]
        for message in batch:
            self._positions[(name, message.topic(), message.partition())] = message.offset() + 1
        return batch

    def _unread_partitions(self, name: str, stage: Stage) -> set[int]:
        return {p for topic in stage.input_topics() for p, records in enumerate(self.topics.log(topic))
                if self._positions.get((name, topic, p), 0) < len(records)}

    # --- output --------------------------------------------------------------
    def messages(self, topic: str) -> list[MemoryMessage]:
        """Every record on ``topic`` (without the prefix), partition by partition."""
        return [m for records in self.topics.log(self.settings.topic(topic)) for m in records]

    def records(self, topic: str, schema: str) -> list[dict[str, Any]]:
        """The decoded records on ``topic``, in partition then offset order."""
        decoder = wire.Decoder(schema)
        return [r for m in self.messages(topic) if m.value() is not None for r in decoder.decode(m.value() or b"")]

    def latest(self, topic: str, schema: str) -> dict[bytes, dict[str, Any]]:
        """The last record of each key (what a compacted topic keeps)."""
        decoder = wire.Decoder(schema)
        return {m.key() or b"": decoder.decode(m.value() or b"")[0] for m in self.messages(topic)
                if m.value() is not None}

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.records(topics.DLQ, schemas.DEAD_LETTER)
