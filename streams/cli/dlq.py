"""``rwe dlq``: inspect the dead-letter topic, and replay dead letters after a fix."""

from __future__ import annotations

from collections import Counter
from typing import Any

from streams.errors import ConfigError
from streams.settings import Settings
from streams.wire import schemas


def summarise(letters: list[dict[str, Any]]) -> list[tuple[str, str, int, str]]:
    """(reason, stage, count, example message) rows, most frequent first."""
    counts: Counter[tuple[str, str]] = Counter((d["reason"], d["stage"]) for d in letters)
    example = {(d["reason"], d["stage"]): d["message"] for d in letters}
    return [(reason, stage, n, example[(reason, stage)]) for (reason, stage), n in counts.most_common()]


def read_all(settings: Settings, limit: int = 0) -> list[dict[str, Any]]:
    """Every dead letter on the dead-letter topic (at most ``limit``; 0: all)."""
    from confluent_kafka import Consumer

    from streams.runtime.runner import consumer_config
    from streams.runtime.topics import DLQ, missing_topics
    from streams.state.changelog import read_partition
    from streams.wire.registry import decoder_for

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

    from streams.runtime.dead_letters import DeadLetterSeal
    from streams.runtime.runner import producer_config

    chosen = [d for d in read_all(settings) if (not reasons or d["reason"] in reasons)
              and d["original_value"] is not None]
    if any(d.get("sealed") for d in chosen):
        secret = settings.with_(dead_letter_encryption="on").dead_letter_secret()
        assert secret is not None
        seal = DeadLetterSeal(secret)
        try:
            chosen = [seal.open(d) for d in chosen]
        except ValueError as exc:
            raise ConfigError(f"replay: {exc}") from None
    # A truncated original cannot be replayed: it is kept for inspection (length and SHA-256).
    letters = [d for d in chosen if d.get("original_size") is None]
    if not dry_run:
        producer = Producer(producer_config(settings))
        for d in letters:
            producer.produce(to_topic or d["source_topic"], value=d["original_value"], key=d["original_key"])
            producer.poll(0)
        if producer.flush(60):
            raise ConfigError("replay: not every dead letter was delivered within 60 s")
    print(f"{'would replay' if dry_run else 'replayed'} {len(letters)} dead letters"
          + (f" with reason {', '.join(reasons)}" if reasons else "")
          + (f"; {len(chosen) - len(letters)} truncated ones not replayable" if len(chosen) > len(letters) else ""))
    return 0
