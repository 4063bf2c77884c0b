# mypyc: compiled (the per-event path: setup.py)
"""What a stage produces through: no output can stop the worker.

confluent-kafka's ``Producer.produce`` raises when a record is over the client's message
limit and when its local queue is full; the broker may refuse a record later, in the
delivery report. Before this, one oversized record ended the worker, and every restart
replayed the same batch into the same error (a crash loop that never committed). Here:

- a full queue waits for deliveries and tries again (backpressure);
- a record the client or the broker refuses for what it is (too large, invalid) becomes
  a dead letter ``unpublishable`` of the stage, holding the record (truncated beyond
  ``RWE_DEAD_LETTER_MAX_BYTES``) and the topic it was meant for, and the worker goes on;
- a record that could not be delivered for a passing reason (timeout, broker gone) fails
  the round before its inputs are committed (:meth:`StageOutput.raise_undelivered`), so a
  restart replays it instead of losing it.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from streams.errors import BrokerUnavailable
from streams.runtime.dead_letters import DeadLetterSeal, dead_letter
from streams.runtime.metrics import EngineMetrics
from streams.vocabulary.dead_letters import Reason, Rejection

log = logging.getLogger(__name__)
# Refusals of the record itself, which no retry changes.
REFUSED = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG,
                     KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_MSG_SIZE})


class StageOutput:
    """A stage's producer with the guards above; also the producer's delivery-report callback."""

    def __init__(self, config: dict[str, object], stage: str, dlq_topic: str, dlq_encoder: Any,
                 metrics: EngineMetrics, max_bytes: int, seal: DeadLetterSeal | None = None) -> None:
        self.seal = seal
        self.producer = Producer({**config, "on_delivery": self.on_delivery, "delivery.report.only.error": True})
        self.stage = stage
        self.dlq_topic = dlq_topic
        self.dlq_encoder = dlq_encoder
        self.metrics = metrics
        self.max_bytes = max_bytes
        self._undelivered: list[str] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int = -1,
                **kwargs: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, partition=partition, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.1)  # the local queue is full: let deliveries drain it
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() not in REFUSED or topic == self.dlq_topic:
                    raise
                self._refused(topic, partition, key, value, error.str())
                return

    def poll(self, timeout: float = 0.0) -> int:
        return int(self.producer.poll(timeout))

    def on_delivery(self, error: KafkaError | None, message: Any) -> None:
        """Delivery reports of failed records (``delivery.report.only.error``)."""
        if error is None:
            return
        if error.code() in REFUSED and message.topic() != self.dlq_topic:
            self._refused(message.topic(), message.partition(), message.key(), message.value(), error.str())
        else:
            self._undelivered.append(f"{message.topic()}: {error.str()}")

    def raise_undelivered(self) -> None:
        """After a flush: fail the round if a record could not be delivered for a passing reason."""
        if self._undelivered:
            first, n = self._undelivered[0], len(self._undelivered)
            self._undelivered = []
            raise BrokerUnavailable(f"{n} records not delivered (first: {first}); their inputs are replayed")

    def _refused(self, topic: str, partition: int, key: bytes | None, value: bytes | None, why: str) -> None:
        size = len(value or b"")
        log.error("%s: the broker refused a record of %d bytes for %s (%s); it is a dead letter", self.stage, size,
                  topic, why)
        letter = dead_letter(Rejection(Reason.UNPUBLISHABLE, f"{size:,} bytes for {topic} refused: {why}"),
                             self.stage, topic, max(partition, 0), -1, None, key, value, None, self.max_bytes,
                             self.seal)
        self.producer.produce(self.dlq_topic, value=self.dlq_encoder.encode(letter), key=f"{topic}/refused".encode())
        self.metrics.dead_letters.labels(self.stage, Reason.UNPUBLISHABLE, self.metrics.site_label(None)).inc()
