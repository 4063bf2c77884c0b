# mypyc: compiled (the per-event path: setup.py)
"""Monitor stage: outcomes.observations + normalise.site-activity -> outcomes.alerts.

One :class:`streams.monitoring.partition_monitor.MonitorState` per input partition: observations are
partitioned by indicator (every site of an indicator meets here) and site activity by
site; with the same partition count, partition p of both topics is one store. Per
batch the stage decodes the records itself (a bad record is a dead letter, never a
crash), feeds FINAL observations to the charts (the rules are in
:mod:`streams.monitoring.partition_monitor`; feed health in :mod:`streams.monitoring.feed_health`), recomputes
the funnel of each indicator that changed once, and publishes the alert records the
batch produced (:mod:`streams.monitoring.alerting`) to ``outcomes.alerts`` (compacted, key
alert_id) before the changelog is written, so a crash replays the batch into the
same records under the same keys. The state goes to a batched changelog like the
other stages (one record per partition per batch, a snapshot when the deltas since the
last one outweigh it).

:meth:`MonitorStage.tick` checks feed silence (wall clock). In-process readers (the
collector, the demo) call :meth:`MonitorStage.readings` and
:meth:`MonitorStage.open_alerts`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message, Producer

from streams.catalogue.definitions import Catalogue, load_catalogue
from streams.clinical.clock import now_us
from streams.indicators import rolling
from streams.monitoring.feed_health import FeedHealth
from streams.monitoring.partition_monitor import MonitorConfig, MonitorState
from streams.monitoring.readings import MonitorReading
from streams.outcomes.record import FINAL, OPEN, problem
from streams.runtime import topics
from streams.runtime.dead_letters import DeadLetterWriter, seal_from
from streams.runtime.metrics import EngineMetrics
from streams.runtime.stage import StageContext
from streams.runtime.unordered import UnorderedInput
from streams.settings import Settings
from streams.state.changelog import ChangelogSource
from streams.state.partitioned import PartitionedState
from streams.vocabulary.dead_letters import Reason, Rejection
from streams.wire import formats as wire
from streams.wire import schemas

log = logging.getLogger(__name__)
STAGE = "monitor"


def monitor_config(settings: Settings) -> MonitorConfig:
    return MonitorConfig(arl0=settings.monitor_arl0, warmup=settings.monitor_warmup,
                         resolve_after=settings.monitor_resolve_after, ewma_lambda=settings.monitor_ewma_lambda,
                         overdispersion=settings.monitor_overdispersion, min_cell_count=settings.min_cell_count,
                         cell_rounding=settings.cell_rounding)


class MonitorStage(UnorderedInput):
    """Sequential monitors and the alert lifecycle as a batch stage of :class:`streams.runtime.runner.StageRunner`."""

    name = STAGE

    def __init__(self, settings: Settings, catalogue: Catalogue, metrics: EngineMetrics, decoder: wire.Decoder,
                 activity_decoder: wire.Decoder, encoder: wire.Encoder, dlq_encoder: wire.Encoder,
                 changelog: ChangelogSource, clock: Callable[[], int] = now_us) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.metrics = metrics
        self.decoder = decoder
        self.activity_decoder = activity_decoder
        self.encoder = encoder
        self.clock = clock
        self.config = monitor_config(settings)
        self.in_topic = settings.topic(topics.OBSERVATIONS)
        self.activity_topic = settings.topic(topics.SITE_ACTIVITY)
        self.out_topic = settings.topic(topics.ALERTS)
        self.dead_letters = DeadLetterWriter(STAGE, settings.topic(topics.DLQ), dlq_encoder, metrics,
                                             settings.dead_letter_max_bytes, seal_from(settings.dead_letter_secret()))
        kinds = {i.id: (i.kind == "continuous", rolling.follow_up_us(i)) for i in catalogue.indicators.values()}
        self.states: PartitionedState[MonitorState] = PartitionedState(
            STAGE, settings.topic(topics.MONITOR_CHANGELOG), schemas.MONITOR_DELTA,
            lambda: MonitorState(kinds, self.config, FeedHealth(settings.feed_silence, settings.feed_dlq_rate),
                                 {i.id: i.better for i in catalogue.indicators.values()}),
            changelog, metrics)
        self._lock = threading.Lock()
        self._events_in = metrics.events_in.labels(STAGE)
        self._events_out = metrics.events_out.labels(STAGE)

    # --- partition ownership -------------------------------------------------
    def input_topics(self) -> list[str]:
        return [self.in_topic, self.activity_topic]

    def assign(self, partitions: list[int]) -> None:
        # A restored partition's open alerts are on the alerts topic already: they were
        # flushed before the changelog that holds them was written. Nothing goes out again.
        with self._lock:
            self.states.assign(partitions)

    def revoke(self, partitions: list[int]) -> None:
        with self._lock:
            self.states.revoke(partitions)

    # --- the batch -----------------------------------------------------------
    def process(self, messages: list[Message], producer: Producer) -> int:
        events = 0
        kinds = self.catalogue.indicators
        with self._lock:
            touched: set[int] = set()
            for msg in messages:
                partition = msg.partition() or 0
                state = self.states.get(partition)
                touched.add(partition)
                if msg.topic() == self.activity_topic:
                    records = self.dead_letters.decode(producer, msg, self.activity_decoder)
                    for record in records or ():
                        state.feed.activity(record)
                    events += len(records or ()) or 1
                    continue
                value = msg.value()
                if value is not None and self.decoder.peek(value, "status") == OPEN:
                    events += 1  # half the records: nothing to chart until the observation is final
                    continue
                records = self.dead_letters.decode(producer, msg, self.decoder)
                if records is None:
                    events += 1
                    continue
                events += len(records)
                for record in records:
                    why = problem(record, self.catalogue)
                    if why is not None:
                        self.dead_letters.send(producer, msg, Rejection(Reason.INVALID_OBSERVATION, why), msg.value(),
                                               record.get("site_id"))
                        continue
                    status = record["status"]
                    if status == OPEN:
                        continue
                    monitor = state.monitor(record["indicator"])
                    if status == FINAL:
                        continuous = kinds[record["indicator"]].kind == "continuous"
                        monitor.observe(record["observation_id"], record["site_id"],
                                        record["closed_time"] or record["index_time"],
                                        record["value"] if continuous else float(record["outcome"]),
                                        record.get("expected"), record["index_time"])
                    else:
                        monitor.retract(record["observation_id"])
            for p in touched:
                self.states.get(p).end_batch()
            produced = self._publish(producer, [self.states.get(p) for p in touched])
        self._events_in.inc(events)
        if produced:
            self._events_out.inc(produced)
        return events

    def _publish(self, producer: Producer, states: list[MonitorState]) -> int:
        records = [r for state in states for r in state.alerts.drain()]
        for record in records:
            producer.produce(self.out_topic, value=self.encoder.encode(record), key=record["alert_id"].encode())
            log.info("alert %s %s: %s %s at %s (%s %.3g, limit %.3g)", record["status"], record["alert_id"],
                     record["method"], record["indicator"] or "feed", record["scope_id"], record["severity"],
                     record["statistic"], record["limit"])
        if records:
            producer.poll(0)
        return len(records)

    def checkpoint(self, producer: Producer) -> bool:
        with self._lock:
            for _partition, state in self.states:
                state.evict()
            return self.states.checkpoint(producer)

    def tick(self, producer: Producer) -> int:
        now = self.clock()
        with self._lock:
            states = [state for _p, state in self.states]
            for state in states:
                state.feed.check_silence(now)
            produced = self._publish(producer, states)
        if produced:
            self._events_out.inc(produced)
        return produced

    # --- in-process readers --------------------------------------------------
    def readings(self) -> list[MonitorReading]:
        """Every monitor's current statistic, limit and whether its alert is open."""
        with self._lock:
            return [r for _p, state in self.states for r in state.readings()]

    def open_alerts(self) -> list[dict[str, Any]]:
        """Open alerts (Alert records as dicts, disclosure-controlled), highest rank first."""
        with self._lock:
            alerts = [dict(a) for _p, state in self.states for a in state.alerts]
        return sorted(alerts, key=lambda a: -a["rank"])


def build(context: StageContext) -> MonitorStage:
    """The stage as the worker discovers it (``agents.<name>.build``)."""
    from streams.wire.registry import decoder_for, encoder_for

    settings = context.settings
    return MonitorStage(
        settings, load_catalogue(), context.metrics,
        decoder=decoder_for(settings, schemas.OUTCOME_OBSERVATION),
        activity_decoder=wire.Decoder(schemas.SITE_ACTIVITY),
        encoder=encoder_for(settings, schemas.ALERT, settings.topic(topics.ALERTS)),
        dlq_encoder=encoder_for(settings, schemas.DEAD_LETTER, settings.topic(topics.DLQ)),
        changelog=context.changelog, clock=context.wall_us,
    )
