"""Reading topics and waiting for the worker, for integration tests on the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer

from streams.runtime.runner import consumer_config
from streams.runtime.stage import StageContext
from streams.runtime.worker import Worker, kafka_context
from streams.settings import Settings
from streams.state.changelog import read_partition
from streams.wire import formats as wire


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


@contextmanager
def running_stage(settings: Settings, name: str,
                  stages: tuple[str, ...] | None = None) -> Iterator[tuple[StageContext, Any]]:
    """A Worker running ``stages`` (default: just ``name``); yields the engine and stage ``name``.
    On exit the worker is stopped and must have recorded no error."""
    engine = kafka_context(settings)
    worker = Worker(engine, list(stages or (name,)))
    stage = next(r.stage for r in worker.runners if r.stage.name == name)
    worker.start()
    try:
        yield engine, stage
    finally:
        worker.stop()
    assert not worker.errors


def stage_events_in(engine: StageContext, stage: str) -> float:
    """Events the stage has read (rwe_stage_events_in_total)."""
    return engine.metrics.registry.get_sample_value("rwe_stage_events_in_total", {"stage": stage}) or 0.0
