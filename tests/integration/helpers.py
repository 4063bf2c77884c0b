"""Reading topics and waiting for the worker, for integration tests on the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

from streams import wire
from streams.changelog import read_partition
from streams.runner import consumer_config
from streams.settings import Settings


def read_topic(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes, int]]:
    """(key, value, partition) of every record on ``topic``, partition by partition."""
    consumer = Consumer(consumer_config(settings, "test-reader"))
    out: list[tuple[bytes | None, bytes, int]] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for p in sorted(partitions):
            out.extend((m.key(), m.value() or b"", p) for m in read_partition(consumer, topic, p))
    finally:
        consumer.close()
    return out


def decode_all(settings: Settings, topic: str, schema: str) -> list[dict[str, Any]]:
    decoder = wire.Decoder(schema)
    return [r for _k, v, _p in read_topic(settings, topic) for r in decoder.decode(v)]


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
