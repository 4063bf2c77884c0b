"""rwe_consumer_lag on the real broker: it shows a backlog, falls to 0 as the stage
works through it, and is withdrawn when the partitions go to another worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from helpers import wait_for

from streams.runtime.metrics import EngineMetrics
from streams.runtime.runner import StageRunner, producer_config, run_round
from streams.runtime.unordered import UnorderedInput
from streams.settings import Settings

pytestmark = pytest.mark.integration
BACKLOG = 300


class SlowStage(UnorderedInput):
    """Reads batches of 10 at ~20 batches/s: slow enough to watch the lag fall."""

    name = "slow"

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.read = 0

    def input_topics(self) -> list[str]:
        return [self.topic]

    def assign(self, partitions: list[int]) -> None:
        pass

    def revoke(self, partitions: list[int]) -> None:
        pass

    def process(self, messages: list[Message], producer: Producer) -> int:
        time.sleep(0.05)
        self.read += len(messages)
        return len(messages)

    def checkpoint(self, producer: Producer) -> bool:
        return False

    def tick(self, producer: Producer) -> int:
        return 0



def test_consumer_lag_follows_the_backlog(broker_settings: Callable[..., Settings]) -> None:
    settings = broker_settings(batch_size=10, consumer_lag_interval=0.1)
    topic = settings.topic("lag")
    admin = AdminClient(settings.kafka_config())
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "-1"})])[topic].result(10)
    producer = Producer(producer_config(settings, **{"linger.ms": 0}))
    for i in range(BACKLOG):
        producer.produce(topic, value=b"x", key=str(i).encode(), partition=0)
        # One record batch per record: Tansu's high watermark is exact only then.
        producer.flush(10)

    metrics = EngineMetrics()
    stage = SlowStage(topic)
    runner = StageRunner(stage, settings, metrics)
    stop = threading.Event()

    def run() -> None:
        runner.open()
        try:
            while not stop.is_set():
                run_round([runner], settings.batch_wait)
        finally:
            runner.close()

    thread = threading.Thread(target=run, daemon=True)
    labels = {"stage": "slow", "topic": topic, "partition": "0"}
    seen: list[float] = []

    def lag() -> float | None:
        value = metrics.registry.get_sample_value("rwe_consumer_lag", labels)
        if value is not None and (not seen or seen[-1] != value):
            seen.append(value)
        return value

    thread.start()
    try:
        wait_for(lambda: lag() == 0 and stage.read >= BACKLOG, timeout=60, what="the backlog to be read")
    finally:
        stop.set()
        thread.join(15)
    assert max(seen) >= BACKLOG / 3, seen      # the backlog was visible while it was worked through
    assert seen == sorted(seen, reverse=True)  # and only fell
    assert seen[-1] == 0
    # Closing the consumer revokes its partitions: their lag is no longer this worker's to report.
    assert metrics.registry.get_sample_value("rwe_consumer_lag", labels) is None
