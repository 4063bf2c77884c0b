# mypyc: compiled (the per-event path: setup.py)
"""Normalise stage: events.raw -> events.normalised (+ events.dlq).

Per batch: decode every message itself (single records, Confluent-framed records
and Avro containers alike; a decode error is a dead letter, never an exception
that ends the stage), validate and normalise each event, drop duplicates by
(site, event id), and publish the normalised events keyed by patient pseudonym.
Events are released in event-time order across the raw partitions
(streams.state.event_time_merge), so a backlog read unevenly does not reach the
per-patient partitions out of order. Dedupe state is per input partition, persisted
through a batched changelog. So that resends are recognised, producers key raw
records by site (or anything stable per event): a resend must land on the same raw
partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message, Producer, TopicPartition

from streams.clinical.clock import now_us
from streams.clinical.codes import CodeMap
from streams.clinical.normaliser import ClinicalNormaliser
from streams.clinical.pseudonym import Pseudonymiser
from streams.monitoring.feed_health import SiteActivityCounter
from streams.runtime import topics
from streams.runtime.dead_letters import DeadLetterWriter, seal_from
from streams.runtime.metrics import EngineMetrics, observe_many
from streams.runtime.stage import StageContext
from streams.settings import Settings
from streams.state.changelog import ChangelogSource
from streams.state.dedupe import CONFLICT, DUPLICATE, NEW, DedupeStore, content_digest
from streams.state.event_time_merge import EventTimeMerge
from streams.state.partitioned import PartitionedState
from streams.vocabulary.dead_letters import Reason, Rejected, Rejection
from streams.wire import formats as wire
from streams.wire import schemas

log = logging.getLogger(__name__)
STAGE = "normalise"


class NormaliseStage:
    """The normaliser as a batch stage of :class:`streams.runtime.runner.StageRunner`."""

    name = STAGE

    def __init__(self, settings: Settings, normaliser: ClinicalNormaliser, metrics: EngineMetrics,
                 decoder: wire.Decoder, encoder: wire.Encoder, dlq_encoder: wire.Encoder,
                 changelog: ChangelogSource, wall_us: Callable[[], int] = now_us) -> None:
        self.settings = settings
        self.normaliser = normaliser
        self.metrics = metrics
        self.decoder = decoder
        self.encoder = encoder
        self.raw_topic = settings.topic(topics.RAW)
        self.out_topic = settings.topic(topics.NORMALISED)
        self.dead_letters = DeadLetterWriter(STAGE, settings.topic(topics.DLQ), dlq_encoder, metrics,
                                             settings.dead_letter_max_bytes, seal_from(settings.dead_letter_secret()))
        self.max_record_bytes = settings.max_record_bytes
        horizon_us = int(settings.dedupe_horizon * 1_000_000)
        self.stores: PartitionedState[DedupeStore] = PartitionedState(
            STAGE, settings.topic(topics.DEDUPE_CHANGELOG), schemas.DEDUPE_DELTA,
            lambda: DedupeStore(horizon_us), changelog, metrics)
        self._reencoder = wire.Encoder(schemas.CLINICAL_EVENT)
        # Feed health: per-site counts per event-time bucket, one record per site per batch.
        self.activity = SiteActivityCounter(settings.feed_bucket)
        self.activity_topic = settings.topic(topics.SITE_ACTIVITY)
        self._activity_encoder = wire.Encoder(schemas.SITE_ACTIVITY)
        m = metrics
        self._events_in = m.events_in.labels(STAGE)
        self._events_out = m.events_out.labels(STAGE)
        self._beyond_horizon = m.beyond_dedupe_horizon.labels(STAGE)
        self._watermark = m.watermark.labels(STAGE)
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        # Events wait here until no busy raw partition can still deliver older ones.
        self.merge: EventTimeMerge[tuple[dict[str, Any], dict[str, Any], Message, bool]] = EventTimeMerge()
        self.busy_partitions: set[int] = set()  # from the runner before every batch
        self.wall_us = wall_us
        self.max_held = 200_000
        self._held = m.held_events.labels(STAGE)

    # --- partition ownership -------------------------------------------------
    def input_topics(self) -> list[str]:
        return [self.raw_topic]

    def assign(self, partitions: list[int]) -> None:
        self.stores.assign(partitions)

    def revoke(self, partitions: list[int]) -> None:
        self.stores.revoke(partitions)
        self.merge.forget(partitions)

    # --- the batch -----------------------------------------------------------
    def process(self, messages: list[Message], producer: Producer) -> int:
        ingest = self.wall_us()
        events = 0
        normalise = self.normaliser.normalise
        merge = self.merge
        for msg in messages:
            value = msg.value()
            partition, offset = msg.partition() or 0, msg.offset() or 0
            merge.read(partition, offset)
            if value is not None and len(value) > self.max_record_bytes:
                events += 1
                self.dead_letters.send(producer, msg, Rejection(Reason.TOO_LARGE, f"message of {len(value):,} bytes "
                                       f"(limit {self.max_record_bytes:,})"), value, None)
                continue
            records = self.dead_letters.decode(producer, msg, self.decoder)
            if records is None:
                events += 1
                continue
            single = len(records) == 1 and value is not None and value[:4] != wire.CONTAINER_MAGIC
            events += len(records)
            for record in records:
                try:
                    out = normalise(record, ingest)
                except Rejected as exc:
                    self._dead_letter_of(record.get("site_id"))
                    original = value if single else self._reencoder.encode(record)
                    self.dead_letters.send(producer, msg, exc.rejection, original, record.get("site_id"))
                    continue
                merge.hold(partition, offset, out["event_time"], (out, record, msg, single))
        self._emit(producer, merge.release(self.busy_partitions), ingest)
        self._events_in.inc(events)
        return events

    def _emit(self, producer: Producer, released: list[tuple[dict[str, Any], dict[str, Any], Message, bool]],
              ingest: int) -> int:
        """Deduplicate and publish released events (already in event-time order)."""
        produce, out_topic, encode = producer.produce, self.out_topic, self.encoder.encode
        m = self.metrics
        accepted: dict[tuple[str, str], list[float]] = {}  # (site, event type) -> feed latencies (s)
        count_activity = self.activity.accepted
        for out, record, msg, single in released:
            store = self.stores.get(msg.partition() or 0)
            site = out["site_id"]
            if store.is_beyond_horizon(out["event_time"]):
                self._beyond_horizon.inc()
            verdict = store.check(site, out["event_id"], out["event_time"], content_digest(record))
            if verdict is NEW:
                produce(out_topic, value=encode(out), key=out["patient_pseudonym"].encode())
                accepted.setdefault((site, out["event_type"]), []).append(max(0.0, (ingest - out["event_time"]) / 1e6))
                count_activity(site, out["event_time"], ingest)
                if not out["mapped"]:
                    m.unmapped_codes.labels(m.site_label(site), out["code_system"] or "unknown").inc()
            elif verdict is DUPLICATE:
                m.duplicates.labels(STAGE, m.site_label(site)).inc()
            else:
                assert verdict is CONFLICT
                self._dead_letter_of(site)
                original = msg.value() if single else self._reencoder.encode(record)
                self.dead_letters.send(producer, msg, Rejection(
                    Reason.DUPLICATE_CONFLICT, "event id already accepted with different content; "
                    "a correction needs a new event id"), original, site)
        for activity in self.activity.drain():
            produce(self.activity_topic, value=self._activity_encoder.encode(activity),
                    key=activity["site_id"].encode())
        producer.poll(0)
        self._held.set(len(self.merge))
        return self._count_accepted(accepted)

    def _dead_letter_of(self, site: Any) -> None:
        if site in self.metrics.sites:  # configured sites only: the feed-health checks are per site
            self.activity.dead_letter(site)

    # --- the stage contract's ordering hooks ---------------------------------
    orders_input = True

    def set_busy_partitions(self, busy: set[int]) -> None:
        self.busy_partitions = busy

    def commit_offsets(self) -> list[TopicPartition] | None:
        """Input offsets safe to commit: behind every event still held for ordering."""
        return [TopicPartition(self.raw_topic, p, offset) for p, offset in self.merge.commit_offsets().items()]

    def partitions_ahead(self) -> set[int]:
        """Partitions worth pausing: many events are held and these run ahead in event time."""
        return self.merge.ahead(self.busy_partitions) if len(self.merge) > self.max_held else set()

    def _count_accepted(self, accepted: dict[tuple[str, str], list[float]]) -> int:
        # Once per batch and (site, event type), through cached label children: per-event
        # metric updates (labels() and a lock per increment) cost more than the rest of the
        # bookkeeping together.
        sent = 0
        for key, latencies in accepted.items():
            children = self._children.get(key)
            if children is None:
                m = self.metrics
                site = m.site_label(key[0])
                children = self._children[key] = (m.site_events.labels(site, key[1]), m.feed_latency.labels(site))
            children[0].inc(len(latencies))
            observe_many(children[1], latencies)
            sent += len(latencies)
        self._events_out.inc(sent)
        return sent

    def tick(self, producer: Producer) -> int:
        return self._emit(producer, self.merge.release(self.busy_partitions), self.wall_us())

    def checkpoint(self, producer: Producer) -> bool:
        for _partition, store in self.stores:
            store.evict()
        if len(self.stores):
            self._watermark.set(max(store.watermark for _p, store in self.stores) / 1e6)
        return self.stores.checkpoint(producer)


def build(context: StageContext) -> NormaliseStage:
    """The stage as the worker discovers it (``agents.<name>.build``)."""
    from streams.wire.registry import decoder_for, encoder_for

    settings = context.settings
    normaliser = ClinicalNormaliser(context.sites, CodeMap.load(), Pseudonymiser(context.key),
                                    settings.future_tolerance, settings.max_id_length, settings.max_code_length)
    return NormaliseStage(
        settings, normaliser, context.metrics,
        decoder=decoder_for(settings, schemas.CLINICAL_EVENT),
        encoder=encoder_for(settings, schemas.NORMALISED_EVENT, settings.topic(topics.NORMALISED)),
        dlq_encoder=encoder_for(settings, schemas.DEAD_LETTER, settings.topic(topics.DLQ)),
        changelog=context.changelog, wall_us=context.wall_us,
    )
