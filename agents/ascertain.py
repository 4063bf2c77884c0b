# mypyc: compiled (the per-event path: setup.py)
"""Ascertain stage: events.normalised -> outcomes.observations.

Per-patient timelines keyed by pseudonym, co-partitioned with the normalised stream
(one :class:`streams.outcomes.tracker.OutcomeTracker` per input partition). Index events open
observations, outcome events close them positive, the per-partition event-time
watermark closes them negative. Observations are published OPEN, then FINAL or
EXCLUDED, keyed ``indicator|site`` and partitioned by indicator so every site of an
indicator meets in one aggregate partition; a late event re-publishes what it changes
with the next revision number, and an event beyond the revision horizon goes to the
dead-letter topic (``beyond_revision_horizon``, replayable once the horizon is raised).
On a quiet live feed the watermark follows the wall clock (``RWE_MAX_FEED_DELAY``
behind), checked at every tick. State goes to a batched changelog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message, Producer

from streams.catalogue.definitions import Catalogue, load_catalogue
from streams.catalogue.sites import Site
from streams.outcomes.ascertainment import Observation
from streams.outcomes.tracker import AFTER_AS_OF, BEYOND_HORIZON, DUPLICATE, LATE, OutcomeTracker, observation_record
from streams.runtime import topics
from streams.runtime.dead_letters import DeadLetterWriter, seal_from
from streams.runtime.metrics import EngineMetrics
from streams.runtime.partitioning import partition_for
from streams.runtime.stage import StageContext
from streams.runtime.unordered import UnorderedInput
from streams.settings import Settings
from streams.state.changelog import ChangelogSource
from streams.state.partitioned import PartitionedState
from streams.vocabulary.dead_letters import Reason, Rejection
from streams.wire import formats as wire
from streams.wire import schemas

log = logging.getLogger(__name__)
STAGE = "ascertain"
DELTA_SCHEMA = schemas.ASCERTAIN_DELTA


class AscertainStage(UnorderedInput):
    name = STAGE

    def __init__(self, settings: Settings, catalogue: Catalogue, sites: dict[str, Site], metrics: EngineMetrics,
                 decoder: wire.Decoder, encoder: wire.Encoder, output_partitions: int,
                 changelog: ChangelogSource, dlq_encoder: wire.Encoder, wall_us: Callable[[], int]) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.sites = sites
        self.metrics = metrics
        self.decoder = decoder
        self.encoder = encoder
        self.output_partitions = output_partitions
        self.in_topic = settings.topic(topics.NORMALISED)
        self.out_topic = settings.topic(topics.OBSERVATIONS)
        self.wall_us = wall_us
        lateness_us = int(settings.allowed_lateness * 1_000_000)
        revision_us = int(settings.revision_horizon * 1_000_000)
        feed_delay_us = int(settings.max_feed_delay * 1_000_000)
        as_of = settings.as_of_us
        self.trackers: PartitionedState[OutcomeTracker] = PartitionedState(
            STAGE, settings.topic(topics.ASCERTAIN_CHANGELOG), DELTA_SCHEMA,
            lambda: OutcomeTracker(catalogue, lateness_us, settings.hot_patients, revision_us, as_of, feed_delay_us),
            changelog, metrics)
        self.dead_letters = DeadLetterWriter(STAGE, settings.topic(topics.DLQ), dlq_encoder, metrics,
                                             settings.dead_letter_max_bytes, seal_from(settings.dead_letter_secret()))
        self._reencoder = wire.Encoder(schemas.NORMALISED_EVENT)
        self._after_as_of = metrics.after_as_of.labels(STAGE)
        m = metrics
        self._events_in = m.events_in.labels(STAGE)
        self._events_out = m.events_out.labels(STAGE)
        self._late = m.late_events.labels(STAGE)
        self._duplicates = m.duplicates.labels(STAGE, "all")
        self._watermark = m.watermark.labels(STAGE)
        self._partition_of: dict[str, int] = {}
        self._observed: dict[tuple[str, str], Any] = {}

    def input_topics(self) -> list[str]:
        return [self.in_topic]

    def assign(self, partitions: list[int]) -> None:
        self.trackers.assign(partitions)

    def revoke(self, partitions: list[int]) -> None:
        self.trackers.revoke(partitions)

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
            tracker = self.trackers.get(msg.partition() or 0)
            touched.add(msg.partition() or 0)
            for event in records:
                events += 1
                verdict = tracker.add(event)
                if verdict is LATE:
                    self._late.inc()
                elif verdict is DUPLICATE:
                    self._duplicates.inc()
                elif verdict is BEYOND_HORIZON:
                    self._beyond_horizon(producer, msg, value, len(records) == 1, event, tracker)
                elif verdict is AFTER_AS_OF:
                    self._after_as_of.inc()
        now = self.wall_us()
        for p in touched:
            tracker = self.trackers.get(p)
            tracker.arrived(now)
            self._publish(producer, tracker.collect())
        self._events_in.inc(events)
        return events

    def _beyond_horizon(self, producer: Producer, msg: Message, value: bytes, single: bool, event: dict[str, Any],
                        tracker: OutcomeTracker) -> None:
        days = (tracker.revision_limit - event["event_time"]) / 86_400e6
        original = value if single and value[:4] != wire.CONTAINER_MAGIC else self._reencoder.encode(event)
        self.dead_letters.send(producer, msg, Rejection(
            Reason.BEYOND_REVISION_HORIZON, f"{event['event_type']} event {days:.1f} days older than the revision "
            f"horizon ({self.settings.revision_horizon / 86400:g} d behind the partition's newest event time) allows"),
            original, event["site_id"])

    def _publish(self, producer: Producer, observations: list[Observation]) -> None:
        for obs in observations:
            record = observation_record(obs, self.catalogue, self.sites)
            partition = self._partition_of.get(obs.indicator)
            if partition is None:
                partition = self._partition_of[obs.indicator] = partition_for(obs.indicator.encode(),
                                                                              self.output_partitions)
            producer.produce(self.out_topic, value=self.encoder.encode(record),
                             key=f"{obs.indicator}|{obs.site}".encode(), partition=partition)
            counter = self._observed.get((obs.indicator, obs.status))
            if counter is None:
                counter = self._observed[(obs.indicator, obs.status)] = self.metrics.observations.labels(
                    obs.indicator, obs.status)
            counter.inc()
        self._events_out.inc(len(observations))
        producer.poll(0)

    def tick(self, producer: Producer) -> int:
        # After a restore every patient is re-examined once; the changes (normally none:
        # what was published is in the changelog too) go out here.
        produced = 0
        now = self.wall_us()
        for _partition, tracker in self.trackers:
            if tracker.pending_restore:
                observations = tracker.flush_all()
                self._publish(producer, observations)
                produced += len(observations)
            elif tracker.follow_clock(now):  # a quiet live feed: follow-ups come due by the wall clock
                observations = tracker.collect()
                self._publish(producer, observations)
                produced += len(observations)
        return produced

    def close_at(self, time: int, producer: Any) -> int:
        """Close every partition's follow-ups at event time ``time`` (a report's as-of time) and
        publish what that finalises; how many observations went out."""
        produced = 0
        for _partition, tracker in self.trackers:
            tracker.close_at(time)
            observations = tracker.collect()
            self._publish(producer, observations)
            produced += len(observations)
        return produced

    def checkpoint(self, producer: Producer) -> bool:
        if len(self.trackers):
            self._watermark.set(max(t.watermark for _p, t in self.trackers) / 1e6)
        return self.trackers.checkpoint(producer)


def build(context: StageContext) -> AscertainStage:
    from streams.wire.registry import decoder_for, encoder_for

    settings = context.settings
    out_topic = settings.topic(topics.OBSERVATIONS)
    return AscertainStage(
        settings, load_catalogue(), context.sites, context.metrics,
        decoder=decoder_for(settings, schemas.NORMALISED_EVENT),
        encoder=encoder_for(settings, schemas.OUTCOME_OBSERVATION, out_topic),
        output_partitions=context.partitions_of(out_topic),
        changelog=context.changelog,
        dlq_encoder=encoder_for(settings, schemas.DEAD_LETTER, settings.topic(topics.DLQ)),
        wall_us=context.wall_us,
    )
