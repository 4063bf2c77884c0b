"""Publishing clinical events to the raw topic: the helper hospital producers can use.

Writes Confluent framing when a schema registry is configured, Avro single-object
encoding otherwise, and Avro containers when sending batches (one Kafka message per
``batch`` events: what backfills and high-volume feeds should use).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from streams.errors import ConfigError
from streams.runtime import topics
from streams.runtime.runner import producer_config
from streams.settings import Settings
from streams.wire import formats as wire
from streams.wire import schemas


class ClinicalEventProducer:
    """Sends ``ClinicalEvent`` dicts (timestamps as local wall-clock microseconds) to events.raw."""

    def __init__(self, settings: Settings, topic: str | None = None, batch: int = 0) -> None:
        from streams.wire.registry import encoder_for

        self.topic = topic or settings.topic(topics.RAW)
        self.batch = batch
        self._encoder = encoder_for(settings, schemas.CLINICAL_EVENT, self.topic)
        self._producer = Producer(producer_config(settings, **{"linger.ms": 10}))
        self._pending: list[dict[str, Any]] = []
        self.messages = 0

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event; keyed by site so resends land on the same partition."""
        if self.batch:
            self._pending.append(event)
            if len(self._pending) >= self.batch:
                self._send_pending()
            return
        self._produce(event["site_id"].encode(), self._encoder.encode(event))

    def _send_pending(self) -> None:
        if self._pending:
            # A container goes whole to one partition: key it by its first site.
            key = self._pending[0]["site_id"].encode()
            self._produce(key, wire.encode_container(schemas.CLINICAL_EVENT, self._pending))
            self._pending = []

    def _produce(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key)
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.05)
        self._producer.poll(0)
        self.messages += 1

    def flush(self, timeout: float = 60.0) -> None:
        self._send_pending()
        remaining = self._producer.flush(timeout)
        if remaining:
            raise ConfigError(f"{remaining} messages not delivered to {self.topic} within {timeout:.0f} s")


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """ClinicalEvent records of an Avro container file, timestamps as integer microseconds."""
    return wire.read_container_file(path, schemas.CLINICAL_EVENT)


def publish_file(settings: Settings, path: Path, batch: int = 0, topic: str | None = None) -> tuple[int, int]:
    """Publish every event of an Avro container file; return (events, Kafka messages)."""
    producer = ClinicalEventProducer(settings, topic, batch)
    events = 0
    for event in read_events(path):
        producer.send(event)
        events += 1
    producer.flush()
    return events, producer.messages


def send_all(settings: Settings, events: Iterable[dict[str, Any]], batch: int = 0) -> int:
    producer = ClinicalEventProducer(settings, batch=batch)
    for event in events:
        producer.send(event)
    producer.flush()
    return producer.messages
