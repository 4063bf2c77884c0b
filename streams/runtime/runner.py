"""The batch consume loop every stage runs on.

Why not a Faust agent: Faust's per-message stream machinery, not Kafka or Avro,
capped a per-event pipeline at ~2-3k events/s on this machine (shared/product.md;
re-measured side by side in benchmarks/). A confluent-kafka ``consume(n)`` loop
hands the stage whole batches; the stage produces its outputs, the loop flushes
them, lets the stage write its changelog (one record per partition per batch), and
commits the input offsets once the next round's flush has made the changelog durable
too. A crash anywhere replays from the last commit, and the stage's idempotence (dedupe
by event id) absorbs the replay: at-least-once delivery, exactly-once effect on state.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.errors import BrokerUnavailable
from streams.runtime import topics
from streams.runtime.dead_letters import seal_from
from streams.runtime.metrics import EngineMetrics
from streams.runtime.output import StageOutput
from streams.runtime.stage import Stage
from streams.settings import Settings
from streams.wire import schemas
from streams.wire.registry import encoder_for

log = logging.getLogger(__name__)


def producer_config(settings: Settings, **extra: object) -> dict[str, object]:
    return settings.kafka_config(**{
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1_000_000,
        "acks": "all",
        # The Java client's partitioner, so keys land where Kafka Streams, Faust and
        # other producers put them: co-partitioning holds across tools.
        "partitioner": "murmur2_random",
        **extra,
    })


def consumer_config(settings: Settings, group_id: str, **extra: object) -> dict[str, object]:
    return settings.kafka_config(**{
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(1000, settings.session_timeout_ms // 6),
        "fetch.wait.max.ms": 10,
        # Smaller per-partition fetches interleave partitions within a batch, so a backlog
        # does not arrive one partition at a time (event-time skew downstream).
        "max.partition.fetch.bytes": 262144,
        "partition.assignment.strategy": "range",
        **extra,
    })


class StageRunner:
    """One stage's consumer (in its own group) and producer; :func:`run_round` drives it
    between :meth:`open` and :meth:`close`."""

    def __init__(self, stage: Stage, settings: Settings, metrics: EngineMetrics,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.stage = stage
        self.settings = settings
        self.metrics = metrics
        self.on_batch = on_batch
        self.assigned = threading.Event()
        self._paused: set[int] = set()
        self._start_offsets: dict[int, int] = {}
        dlq = settings.topic(topics.DLQ)
        self.output = StageOutput(producer_config(settings, **{"client.id": f"rwe-{stage.name}"}), stage.name, dlq,
                                  encoder_for(settings, schemas.DEAD_LETTER, dlq), metrics,
                                  settings.dead_letter_max_bytes, seal_from(settings.dead_letter_secret()))
        self.producer = self.output.producer
        lag: dict[str, object] = {}
        if settings.consumer_lag_interval:
            # librdkafka computes the lag itself from fetch responses and commits: no extra
            # broker round trip; the callback runs inside consume() on this stage's thread.
            lag = {"statistics.interval.ms": max(1, int(settings.consumer_lag_interval * 1000)),
                   "stats_cb": self._on_statistics}
        self.consumer = Consumer(consumer_config(settings, f"{settings.group_id}.{stage.name}",
                                                 **{"client.id": f"rwe-{stage.name}"}, **lag))
        self.events = 0
        self._held: list[TopicPartition] = []  # input positions waiting for their state to be durable

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ids = [tp.partition for tp in partitions]
        self.metrics.rebalances.labels(self.stage.name, "assign").inc()
        log.info("%s: assigned partitions %s", self.stage.name, ids)
        try:  # where reading starts: what the busy-partition check compares with until a first read
            committed = consumer.committed(partitions, timeout=10)
            self._start_offsets.update({tp.partition: tp.offset for tp in committed if tp.offset >= 0})
        except KafkaException as exc:
            log.warning("%s: committed offsets unavailable: %s", self.stage.name, exc)
        self.stage.assign(ids)
        self.assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._held:  # what this worker has made durable is not replayed by the next owner
            _flush(self.producer)
            self.output.raise_undelivered()
            self.commit_held()
        ids = [tp.partition for tp in partitions]
        self.metrics.rebalances.labels(self.stage.name, "revoke").inc()
        log.info("%s: revoked partitions %s", self.stage.name, ids)
        self.stage.revoke(ids)
        for p in ids:
            self._start_offsets.pop(p, None)
            self._paused.discard(p)
        for tp in partitions:  # another worker reports these now
            try:
                self.metrics.consumer_lag.remove(self.stage.name, tp.topic, str(tp.partition))
            except KeyError:
                pass

    def _on_statistics(self, raw: str) -> None:
        """Consumer lag per assigned partition from librdkafka's statistics JSON: high
        watermark minus committed offset, both as librdkafka last saw them (no extra broker
        round trip). Unknown (nothing committed or fetched yet) leaves the gauge as it was.
        Tansu can report a high watermark one producer batch short of the log end
        (shared/product.md), so lag there is a lower bound, floored at 0; exact on Kafka."""
        lag = self.metrics.consumer_lag
        for topic, info in json.loads(raw).get("topics", {}).items():
            for partition, p in info.get("partitions", {}).items():
                committed, end = p.get("committed_offset", -1), p.get("hi_offset", -1)
                if p.get("desired") and committed >= 0 and end >= 0 and partition != "-1":
                    lag.labels(self.stage.name, topic, partition).set(max(0, end - committed))

    def open(self) -> None:
        stage = self.stage
        self.consumer.subscribe(stage.input_topics(), on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._batch_seconds = self.metrics.batch_seconds.labels(stage.name)
        self._batch_events = self.metrics.batch_size.labels(stage.name)
        self._messages_in = self.metrics.messages_in.labels(stage.name)

    def take(self, wait: float) -> list[Message]:
        """The next batch (waiting at most ``wait`` s), without errors and end-of-partition markers."""
        good = [m for m in self.consumer.consume(self.settings.batch_size, wait) if _usable(m)]
        if self.stage.orders_input:
            self.stage.set_busy_partitions(self._busy_partitions())
        return good

    def _done(self, good: list[Message], events: int, started: float) -> None:
        """After the batch's inputs are committed: pacing and accounting."""
        if self.stage.orders_input:
            self._pace(self.stage.partitions_ahead())
        self._batch_seconds.observe(time.perf_counter() - started)
        self._batch_events.observe(events)
        self._messages_in.inc(len(good))
        self.events += events
        if self.on_batch is not None:
            self.on_batch(events)

    def hold_commit(self) -> None:
        """Note the input positions the batch just checkpointed reached: they are committed
        (:meth:`commit_held`) once the state changes written for it are durable."""
        positions = self.stage.commit_offsets()
        if positions is None:
            assignment = self.consumer.assignment()
            positions = [tp for tp in self.consumer.position(assignment) if tp.offset >= 0] if assignment else []
        if positions:
            self._held = positions

    def commit_held(self) -> None:
        """Commit the held positions; only after this runner's producer was flushed since they were held."""
        if self._held:
            self.consumer.commit(offsets=self._held, asynchronous=True)
            self._held = []

    def _busy_partitions(self) -> set[int]:
        """Assigned partitions known to have records still to read (a backlog)."""
        assignment = self.consumer.assignment()
        if not assignment:
            return set()
        busy = set()
        for tp in self.consumer.position(assignment):
            low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:  # no fetch answered yet: ask the broker once
                try:
                    low, high = self.consumer.get_watermark_offsets(tp, timeout=2)
                except KafkaException:
                    continue
            offset = tp.offset if tp.offset >= 0 else self._start_offsets.get(tp.partition, low)
            # Tansu reports the start of the last record batch + 1 as the high watermark:
            # a position at or past high - 1 may be the true end.
            if max(offset, low) < high - 1:
                busy.add(tp.partition)
        return busy

    def _pace(self, ahead: set[int]) -> None:
        """Pause partitions far ahead in event time; resume the rest."""
        assignment = self.consumer.assignment()
        pause = [tp for tp in assignment if tp.partition in ahead]
        resume = [tp for tp in assignment if tp.partition not in ahead and tp.partition in self._paused]
        if pause:
            self.consumer.pause(pause)
        if resume:
            self.consumer.resume(resume)
        self._paused = {tp.partition for tp in pause} | (self._paused - {tp.partition for tp in resume})

    def close(self) -> None:
        try:
            _flush(self.producer, timeout=10)
            if self._held:
                self.consumer.commit(offsets=self._held, asynchronous=False)
                self._held = []
        except BrokerUnavailable:
            log.warning("%s: outputs still unsent at shutdown; they are replayed on restart", self.stage.name)
        except KafkaException as exc:
            log.warning("%s: last commit at shutdown: %s; the last batch is replayed on restart", self.stage.name, exc)
        try:
            self.consumer.close()
        except KafkaException as exc:
            log.warning("%s: consumer close: %s", self.stage.name, exc)
        # Nothing left to send (flushed, or given up on): a producer left open would keep
        # reconnecting, and logging it, once the broker goes away.
        self.producer.purge()
        self.producer.close()


def _usable(message: Message) -> bool:
    err = message.error()
    if err is None:
        return True
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consume error: %s", err.str())
        if err.fatal():
            raise BrokerUnavailable(err.str())
    return False


def _flush(producer: Producer, timeout: float = 60.0) -> None:
    remaining = producer.flush(timeout)
    if remaining:
        raise BrokerUnavailable(f"{remaining} messages not acknowledged by the broker within {timeout:.0f} s")


def run_round(runners: Sequence[StageRunner], wait: float) -> int:
    """One batch of every runner; returns the messages consumed.

    Each stage consumes and processes its batch and does its time-driven work; then
    every output is made durable, every stage writes its state changes, and the input
    positions they reach are held. The next round's flush (of its outputs, or of nothing
    but these changes) makes the changes durable too, and only then are the held inputs
    committed: at-least-once, since a crash anywhere replays from the last commit, with
    one broker round trip per round instead of two. Done for all stages at once, their
    round trips overlap.
    """
    rounds = []
    for runner in runners:
        good = runner.take(wait)
        started = time.perf_counter()
        events = runner.stage.process(good, runner.output) if good else 0
        ticked = runner.stage.tick(runner.output)
        rounds.append((runner, good, events, started, bool(good) or ticked > 0))
    for runner, _good, _events, _started, busy in rounds:
        if busy or runner._held:
            _flush(runner.producer)  # this round's outputs and the last round's state changes
            runner.output.raise_undelivered()
            runner.commit_held()
    for runner, good, events, started, busy in rounds:
        if busy:
            runner.stage.checkpoint(runner.output)
            runner.hold_commit()
            if good:
                runner._done(good, events, started)
    return sum(len(r[1]) for r in rounds)
