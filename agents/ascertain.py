"""Ascertain stage: events.normalised -> outcomes.observations.

Per-patient timelines keyed by pseudonym, co-partitioned with the normalised stream
(one :class:`streams.outcomes.OutcomeTracker` per input partition). Index events open
observations, outcome events close them positive, the per-partition event-time
watermark closes them negative. Observations are published OPEN, then FINAL or
EXCLUDED, keyed ``indicator|site`` and partitioned by indicator so every site of an
indicator meets in one aggregate partition. State goes to a batched changelog.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from confluent_kafka import Message, Producer

from streams import schemas, topics, wire
from streams.ascertainment import Observation
from streams.changelog import ChangelogWriter, restore
from streams.definitions import Catalogue, load_catalogue
from streams.engine import Engine
from streams.metrics import EngineMetrics
from streams.outcomes import APPLIED, DUPLICATE, LATE, OutcomeTracker, observation_record
from streams.partitioning import partition_for
from streams.settings import Settings
from streams.sites import Site

log = logging.getLogger(__name__)
STAGE = "ascertain"
DELTA_SCHEMA = "rwe.internal.AscertainDelta"


class AscertainStage:
    name = STAGE

    def __init__(self, settings: Settings, catalogue: Catalogue, sites: dict[str, Site], metrics: EngineMetrics,
                 decoder: wire.Decoder, encoder: wire.Encoder, output_partitions: int,
                 consumer_factory: Any) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.sites = sites
        self.metrics = metrics
        self.decoder = decoder
        self.encoder = encoder
        self.output_partitions = output_partitions
        self.in_topic = settings.topic(topics.NORMALISED)
        self.out_topic = settings.topic(topics.OBSERVATIONS)
        self.changelog_topic = settings.topic(topics.ASCERTAIN_CHANGELOG)
        self._consumer_factory = consumer_factory
        self._lateness_us = int(settings.allowed_lateness * 1_000_000)
        self._trackers: dict[int, OutcomeTracker] = {}
        self._changelog: ChangelogWriter | None = None
        self._delta_encoder = wire.Encoder(DELTA_SCHEMA)
        self._delta_decoder = wire.Decoder(DELTA_SCHEMA)
        self._restored: list[Observation] = []
        m = metrics
        self._events_in = m.events_in.labels(STAGE)
        self._events_out = m.events_out.labels(STAGE)
        self._late = m.late_events.labels(STAGE)
        self._duplicates = m.duplicates.labels(STAGE, "all")
        self._patients = m.state_entries.labels(STAGE)
        self._watermark = m.watermark.labels(STAGE)

    def input_topics(self) -> list[str]:
        return [self.in_topic]

    def tracker(self, partition: int) -> OutcomeTracker:
        tracker = self._trackers.get(partition)
        if tracker is None:
            tracker = self._trackers[partition] = OutcomeTracker(self.catalogue, self._lateness_us)
        return tracker

    def assign(self, partitions: list[int]) -> None:
        for p in partitions:
            tracker = OutcomeTracker(self.catalogue, self._lateness_us)
            n = restore(self._consumer_factory, self.changelog_topic, p, functools.partial(self._apply, tracker))
            tracker.restored()
            self._trackers[p] = tracker
            if self._changelog is not None:
                self._changelog.reset(p)
            self.metrics.restored_records.labels(STAGE).inc(n)
            log.info("ascertain: partition %d restored %d changelog records, %d patients", p, n,
                     len(tracker.patients))

    def _apply(self, tracker: OutcomeTracker, value: bytes) -> None:
        tracker.apply(self._delta_decoder.decode(value)[0])

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self._trackers.pop(p, None)
            if self._changelog is not None:
                self._changelog.reset(p)

    def process(self, messages: list[Message], producer: Producer) -> int:
        events = 0
        touched: set[int] = set()
        for msg in messages:
            value = msg.value()
            if value is None:
                continue
            try:
                records = self.decoder.decode(value)
            except wire.DecodeError as exc:  # our own topic: a bug or a foreign producer; never fatal
                log.error("ascertain: undecodable record at %s/%s/%s: %s", msg.topic(), msg.partition(),
                          msg.offset(), exc.message)
                self.metrics.dead_letters.labels(STAGE, exc.reason, "other").inc()
                continue
            tracker = self.tracker(msg.partition() or 0)
            touched.add(msg.partition() or 0)
            for event in records:
                events += 1
                verdict = tracker.add(event)
                if verdict is LATE:
                    self._late.inc()
                elif verdict is DUPLICATE:
                    self._duplicates.inc()
                elif verdict is not APPLIED:
                    continue
        for p in touched:
            self._publish(producer, self._trackers[p].collect())
        self._events_in.inc(events)
        return events

    def _publish(self, producer: Producer, observations: list[Observation]) -> None:
        for obs in observations:
            record = observation_record(obs, self.catalogue, self.sites)
            producer.produce(self.out_topic, value=self.encoder.encode(record),
                             key=f"{obs.indicator}|{obs.site}".encode(),
                             partition=partition_for(obs.indicator.encode(), self.output_partitions))
            self.metrics.observations.labels(obs.indicator, obs.status).inc()
        self._events_out.inc(len(observations))
        producer.poll(0)

    def tick(self, producer: Producer) -> int:
        # After a restore every patient is re-examined once; the changes (normally none:
        # what was published is in the changelog too) go out here.
        produced = 0
        for tracker in self._trackers.values():
            if tracker.pending_restore:
                observations = tracker.flush_all()
                self._publish(producer, observations)
                produced += len(observations)
        return produced

    def checkpoint(self, producer: Producer) -> bool:
        if self._changelog is None:
            self._changelog = ChangelogWriter(producer, self.changelog_topic)
        wrote = False
        for partition, tracker in self._trackers.items():
            delta = tracker.take_delta()
            if delta is None:
                continue
            records = tracker.snapshot() if self._changelog.wants_snapshot(partition) else [delta]
            for record in records:
                self._changelog.write(partition, self._delta_encoder.encode(record), record["snapshot"])
            wrote = True
        patients = sum(len(t.patients) for t in self._trackers.values())
        self._patients.set(patients)
        if self._trackers:
            self._watermark.set(max(t.watermark for t in self._trackers.values()) / 1e6)
        return wrote


def output_partitions(settings: Settings, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(settings.kafka_config()).list_topics(topic, timeout=10)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return settings.partitions
    return len(found.partitions)


def build(engine: Engine) -> AscertainStage:
    from streams.registry import decoder_for, encoder_for

    settings = engine.settings
    out_topic = settings.topic(topics.OBSERVATIONS)
    return AscertainStage(
        settings, load_catalogue(), engine.sites, engine.metrics,
        decoder=decoder_for(settings, schemas.NORMALISED_EVENT),
        encoder=encoder_for(settings, schemas.OUTCOME_OBSERVATION, out_topic),
        output_partitions=output_partitions(settings, out_topic),
        consumer_factory=engine.changelog_consumer,
    )
