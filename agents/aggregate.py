# mypyc: compiled (the per-event path: setup.py)
"""Aggregate stage: outcomes.observations -> outcomes.indicators (+ network.aggregates).

One :class:`streams.indicators.rolling.RollingState` per input partition (observations are
partitioned by indicator, so each indicator's sites all meet here; the semantics of
windows, upserts, retention and the clock are documented in :mod:`streams.indicators.rolling`).
Per batch the stage decodes OutcomeObservation records itself (a bad record is a
dead letter, never a crash) and upserts them; its state goes to a batched changelog
(one record per partition per batch, a full snapshot when the deltas since the last
one outweigh it: :mod:`streams.state.changelog`), written after the batch's outputs are
durable and before the input offsets are committed. A replayed batch is absorbed by
the upserts.

Publication (:meth:`AggregateStage.tick`, which the runner calls after every batch
and idle poll): an indicator whose snapshots may have changed is recomputed at most
once per ``coalesce_seconds`` (``RWE_SNAPSHOT_INTERVAL``, wall clock); each of its
snapshots whose content changed is published to ``outcomes.indicators`` (compacted, key
``indicator|scope|scope_id|window``, window ``all`` for cumulative) after
disclosure control (:mod:`streams.indicators.disclosure`); COUNTRY and NETWORK snapshots go
also to ``network.aggregates`` (federation shares aggregates only). *Content* is
every field but ``as_of``: the clock moving alone does not republish a snapshot,
so a snapshot's ``as_of`` is the clock when its values last changed and its values
hold until a newer record for the key. After a restart or rebalance, a restored
partition's indicators that its changelog lists as changed but not yet published are
published; the others count as published, so nothing unchanged goes out again.

In-process readers (the demo, a Prometheus collector) call
:meth:`AggregateStage.latest_snapshots`: the latest published record of every key.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message, Producer
from prometheus_client import CollectorRegistry, Counter

from streams.catalogue.definitions import Catalogue, load_catalogue
from streams.indicators import rolling
from streams.indicators.rolling import RollingState
from streams.outcomes.record import EXCLUDED, STATUSES, SUPERSEDED, problem
from streams.runtime import topics
from streams.runtime.dead_letters import DeadLetterWriter, seal_from
from streams.runtime.metrics import EngineMetrics
from streams.runtime.stage import StageContext
from streams.runtime.unordered import UnorderedInput
from streams.settings import Settings
from streams.state.changelog import ChangelogSource
from streams.state.partitioned import PartitionedState
from streams.vocabulary.dead_letters import Reason, Rejection
from streams.vocabulary.scopes import FEDERATED
from streams.wire import formats as wire
from streams.wire import schemas

log = logging.getLogger(__name__)
STAGE = "aggregate"
DELTA_SCHEMA = schemas.AGGREGATE_DELTA


class AggregateMetrics:
    """The stage's own counters, on the engine registry (labels: indicator ids, scopes)."""

    def __init__(self, registry: CollectorRegistry, prefix: str = "rwe") -> None:
        self.observations = Counter(
            f"{prefix}_aggregate_observations", "Outcome observations aggregated, by indicator and status "
            "(SUPERSEDED: a retraction).", ["indicator", "status"], registry=registry)
        self.snapshots = Counter(f"{prefix}_aggregate_snapshots_published", "IndicatorSnapshots published.",
                                 ["scope", "suppressed"], registry=registry)
        self.computations = Counter(f"{prefix}_aggregate_indicator_computations",
                                    "Recomputations of all snapshots of one indicator.", registry=registry)


_metrics_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, AggregateMetrics] = weakref.WeakKeyDictionary()
_metrics_lock = threading.Lock()


def aggregate_metrics(registry: CollectorRegistry) -> AggregateMetrics:
    """One bundle per registry (a second stage on the same registry shares it)."""
    with _metrics_lock:
        found = _metrics_by_registry.get(registry)
        if found is None:
            found = _metrics_by_registry[registry] = AggregateMetrics(registry)
        return found


def _content(snapshot: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(v for k, v in snapshot.items() if k != "as_of")


class AggregateStage(UnorderedInput):
    """Rolling indicators as a batch stage of :class:`streams.runtime.runner.StageRunner`."""

    name = STAGE

    def __init__(self, settings: Settings, catalogue: Catalogue, metrics: EngineMetrics, decoder: wire.Decoder,
                 encoder: wire.Encoder, network_encoder: wire.Encoder, dlq_encoder: wire.Encoder,
                 changelog: ChangelogSource, coalesce_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.metrics = metrics
        self.decoder = decoder
        self.encoder = encoder
        self.network_encoder = network_encoder
        self.coalesce_seconds = coalesce_seconds
        self.clock = clock
        self.in_topic = settings.topic(topics.OBSERVATIONS)
        self.out_topic = settings.topic(topics.INDICATORS)
        self.network_topic = settings.topic(topics.NETWORK)
        self.dead_letters = DeadLetterWriter(STAGE, settings.topic(topics.DLQ), dlq_encoder, metrics,
                                             settings.dead_letter_max_bytes, seal_from(settings.dead_letter_secret()))
        revision_us = int(settings.revision_horizon * 1_000_000)
        as_of = settings.as_of_us
        self.states: PartitionedState[RollingState] = PartitionedState(
            STAGE, settings.topic(topics.AGGREGATE_CHANGELOG), DELTA_SCHEMA,
            lambda: RollingState(catalogue, revision_us, as_of), changelog, metrics)
        self._reencoder = wire.Encoder(schemas.OUTCOME_OBSERVATION)
        self._computed_at: dict[tuple[int, str], float] = {}
        self._published: dict[str, tuple[Any, ...]] = {}   # key -> content last published
        self._latest: dict[str, dict[str, Any]] = {}        # key -> record last published
        self._keys_of: dict[int, set[str]] = {}             # partition -> keys it published
        self._lock = threading.Lock()
        self.own = aggregate_metrics(metrics.registry)
        self._events_in = metrics.events_in.labels(STAGE)
        self._events_out = metrics.events_out.labels(STAGE)
        self._watermark = metrics.watermark.labels(STAGE)
        self._observed = {(i, s): self.own.observations.labels(i, s)
                          for i in catalogue.indicators for s in (*STATUSES, "SUPERSEDED")}

    # --- partition ownership -------------------------------------------------
    def input_topics(self) -> list[str]:
        return [self.in_topic]

    def assign(self, partitions: list[int]) -> None:
        self.states.assign(partitions)
        # What a restored partition had published: every indicator its changelog does not
        # list as changed-but-unpublished (those go out at the next tick). So a restart or a
        # rebalance republishes nothing that did not change.
        k, rounding = self.settings.min_cell_count, self.settings.cell_rounding
        for partition in partitions:
            state = self.states.get(partition)
            for indicator in state.indicators:
                if indicator in state.dirty:
                    continue
                for key, snapshot in state.snapshots(indicator, k, rounding).items():
                    with self._lock:
                        self._published[key] = _content(snapshot)
                        self._latest[key] = snapshot
                    self._keys_of.setdefault(partition, set()).add(key)

    def revoke(self, partitions: list[int]) -> None:
        self.states.revoke(partitions)
        for p in partitions:
            with self._lock:
                for key in self._keys_of.pop(p, set()):
                    self._published.pop(key, None)
                    self._latest.pop(key, None)
            for ck in [ck for ck in self._computed_at if ck[0] == p]:
                del self._computed_at[ck]

    # --- the batch -----------------------------------------------------------
    def process(self, messages: list[Message], producer: Producer) -> int:
        events = 0
        catalogue = self.catalogue
        for msg in messages:
            value = msg.value()
            records = self.dead_letters.decode(producer, msg, self.decoder)
            if records is None:
                events += 1
                continue
            single = len(records) == 1 and value is not None and value[:4] != wire.CONTAINER_MAGIC
            state = self.states.get(msg.partition() or 0)
            events += len(records)
            for record in records:
                why = problem(record, catalogue)
                if why is not None:
                    original = value if single else self._reencoder.encode(record)
                    self.dead_letters.send(producer, msg, Rejection(Reason.INVALID_OBSERVATION, why), original,
                                           record.get("site_id"))
                    continue
                indicator = record["indicator"]
                status = record["status"]
                if status == EXCLUDED and record.get("exclusion") == SUPERSEDED:
                    status = "SUPERSEDED"
                self._observed[(indicator, status)].inc()
                if state.upsert(record) == rolling.BEYOND_RETENTION:
                    original = value if single else self._reencoder.encode(record)
                    self.dead_letters.send(producer, msg, Rejection(
                        Reason.BEYOND_REVISION_HORIZON, f"{indicator} observation indexed before the retained "
                        "365 d + follow-up + revision horizon behind the indicator's clock"),
                        original, record.get("site_id"))
        for _partition, state in self.states:
            state.settle()
        self._events_in.inc(events)
        return events

    def checkpoint(self, producer: Producer) -> bool:
        for _partition, state in self.states:
            state.evict()
        if len(self.states):
            self._watermark.set(max(s.as_of for _p, s in self.states) / 1e6)
        return self.states.checkpoint(producer)

    # --- publication ---------------------------------------------------------
    def tick(self, producer: Producer) -> int:
        now = self.clock()
        produced = 0
        k, rounding = self.settings.min_cell_count, self.settings.cell_rounding
        for partition, state in self.states:
            for indicator in sorted(state.dirty):
                last = self._computed_at.get((partition, indicator))
                if last is not None and now - last < self.coalesce_seconds:
                    continue
                state.dirty.discard(indicator)
                self._computed_at[(partition, indicator)] = now
                self.own.computations.inc()
                for key, snapshot in state.snapshots(indicator, k, rounding).items():
                    content = _content(snapshot)
                    if self._published.get(key) == content:
                        continue
                    produced += self._publish(producer, key, snapshot)
                    with self._lock:
                        self._published[key] = content
                        self._latest[key] = snapshot
                    self._keys_of.setdefault(partition, set()).add(key)
        if produced:
            self._events_out.inc(produced)
        return produced

    def _publish(self, producer: Producer, key: str, snapshot: dict[str, Any]) -> int:
        kb = key.encode()
        producer.produce(self.out_topic, value=self.encoder.encode(snapshot), key=kb)
        n = 1
        if snapshot["scope"] in FEDERATED:
            producer.produce(self.network_topic, value=self.network_encoder.encode(snapshot), key=kb)
            n += 1
        self.own.snapshots.labels(snapshot["scope"], "true" if snapshot["suppressed"] else "false").inc()
        producer.poll(0)
        return n

    def latest_snapshots(self, indicator: str | None = None) -> dict[str, dict[str, Any]]:
        """The latest published (disclosure-controlled) snapshot of every key this worker
        owns, by key ``indicator|scope|scope_id|window``; thread-safe copies."""
        with self._lock:
            return {key: dict(s) for key, s in self._latest.items()
                    if indicator is None or s["indicator"] == indicator}


def build(context: StageContext) -> AggregateStage:
    """The stage as the worker discovers it (``agents.<name>.build``)."""
    from streams.wire.registry import decoder_for, encoder_for

    settings = context.settings
    return AggregateStage(
        settings, load_catalogue(), context.metrics,
        decoder=decoder_for(settings, schemas.OUTCOME_OBSERVATION),
        encoder=encoder_for(settings, schemas.INDICATOR_SNAPSHOT, settings.topic(topics.INDICATORS)),
        network_encoder=encoder_for(settings, schemas.INDICATOR_SNAPSHOT, settings.topic(topics.NETWORK)),
        dlq_encoder=encoder_for(settings, schemas.DEAD_LETTER, settings.topic(topics.DLQ)),
        changelog=context.changelog, coalesce_seconds=settings.snapshot_interval,
        clock=context.monotonic,
    )
