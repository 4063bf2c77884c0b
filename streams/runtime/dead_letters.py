"""Dead letters: the record a stage writes for what it cannot accept, and the writer that sends and counts them."""

from __future__ import annotations

from typing import Any

from streams.clinical.clock import now_us
from streams.vocabulary.dead_letters import Reason, Rejection
from streams.wire.formats import DecodeError


def dead_letter(rejection: Rejection, stage: str, topic: str, partition: int, offset: int,
                timestamp_ms: int | None, key: bytes | None, value: bytes | None,
                site_id: str | None = None) -> dict[str, Any]:
    """A DeadLetter record (plain dict of ``rwe.events.DeadLetter``)."""
    return {
        "reason": rejection.reason,
        "message": rejection.message,
        "stage": stage,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "source_timestamp": timestamp_ms,
        "original_key": key,
        "original_value": value,
        "site_id": site_id,
        "failed_at": now_us(),
    }


class DeadLetterWriter:
    """Sends a stage's rejected records to the dead-letter topic and counts them."""

    def __init__(self, stage: str, topic: str, encoder: Any, metrics: Any) -> None:
        self.stage = stage
        self.topic = topic
        self.encoder = encoder
        self.metrics = metrics

    def decode(self, producer: Any, msg: Any, decoder: Any) -> list[dict[str, Any]] | None:
        """The records of ``msg``, or None after sending it to the dead-letter topic."""
        value = msg.value()
        try:
            if value is None:
                raise DecodeError(Reason.UNDECODABLE, "message has no value")
            records: list[dict[str, Any]] = decoder.decode(value)
        except DecodeError as exc:
            self.send(producer, msg, Rejection(exc.reason, exc.message), value, None)
            return None
        return records

    def send(self, producer: Any, msg: Any, rejection: Rejection, original: bytes | None,
             site_id: str | None) -> None:
        """``msg``: the source Kafka message; ``original``: the record's own bytes."""
        known_site = site_id if site_id in self.metrics.sites else None
        timestamp_type, timestamp = msg.timestamp()
        letter = dead_letter(rejection, self.stage, msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                             timestamp if timestamp_type else None, msg.key(), original, known_site)
        key = f"{letter['source_topic']}/{letter['source_partition']}/{letter['source_offset']}".encode()
        producer.produce(self.topic, value=self.encoder.encode(letter), key=key)
        self.metrics.dead_letters.labels(self.stage, rejection.reason, self.metrics.site_label(site_id)).inc()
