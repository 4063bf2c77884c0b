"""Dead letters: building them, and inspecting and replaying the dead-letter topic."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from streams import schemas
from streams.clock import now_us
from streams.errors import ConfigError
from streams.settings import Settings
from streams.wire import DecodeError


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was not accepted: a stable reason code and a message without patient data."""

    reason: str
    message: str


class Rejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(reason, message)


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
                raise DecodeError("undecodable", "message has no value")
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


def summarise(letters: list[dict[str, Any]]) -> list[tuple[str, str, int, str]]:
    """(reason, stage, count, example message) rows, most frequent first."""
    counts: Counter[tuple[str, str]] = Counter((d["reason"], d["stage"]) for d in letters)
    example = {(d["reason"], d["stage"]): d["message"] for d in letters}
    return [(reason, stage, n, example[(reason, stage)]) for (reason, stage), n in counts.most_common()]


def read_all(settings: Settings, limit: int = 0) -> list[dict[str, Any]]:
    """Every dead letter on the dead-letter topic (at most ``limit``; 0: all)."""
    from confluent_kafka import Consumer

    from streams.changelog import read_partition
    from streams.registry import decoder_for
    from streams.runner import consumer_config
    from streams.topics import DLQ, missing_topics

    topic = settings.topic(DLQ)
    if topic in missing_topics(settings):
        raise ConfigError(f"no dead-letter topic {topic} on {settings.broker}")
    decoder = decoder_for(settings, schemas.DEAD_LETTER)
    consumer = Consumer(consumer_config(settings, f"{settings.group_id}.dlq-reader"))
    letters: list[dict[str, Any]] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for partition in sorted(partitions):
            for message in read_partition(consumer, topic, partition):
                letters.extend(decoder.decode(message.value() or b""))
                if limit and len(letters) >= limit:
                    return letters[:limit]
    finally:
        consumer.close()
    return letters


def inspect(settings: Settings, limit: int = 0, show: int = 0) -> int:
    letters = read_all(settings, limit)
    print(f"{len(letters)} dead letters on {settings.topic('events.dlq')}")
    for reason, stage, n, example in summarise(letters):
        print(f"  {n:8d}  {reason:22} {stage:10} e.g. {example}")
    for d in letters[:show]:
        print(f"{d['source_topic']}/{d['source_partition']}/{d['source_offset']} {d['reason']}: {d['message']} "
              f"({len(d['original_value'] or b'')} bytes)")
    return 0


def replay(settings: Settings, reasons: list[str] | None = None, to_topic: str | None = None,
           dry_run: bool = False) -> int:
    """Send dead letters' original bytes back to their source topic (after a fix)."""
    from confluent_kafka import Producer

    from streams.runner import producer_config

    letters = [d for d in read_all(settings) if (not reasons or d["reason"] in reasons)
               and d["original_value"] is not None]
    if not dry_run:
        producer = Producer(producer_config(settings))
        for d in letters:
            producer.produce(to_topic or d["source_topic"], value=d["original_value"], key=d["original_key"])
            producer.poll(0)
        if producer.flush(60):
            raise ConfigError("replay: not every dead letter was delivered within 60 s")
    print(f"{'would replay' if dry_run else 'replayed'} {len(letters)} dead letters"
          + (f" with reason {', '.join(reasons)}" if reasons else ""))
    return 0
