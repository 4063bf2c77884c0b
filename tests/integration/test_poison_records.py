"""Records too large or too odd to process or publish are dead letters on the real broker; the worker goes on."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import clinical_event
from helpers import decode_all, read_topic, running_stage, stage_events_in, wait_for

from streams.runtime import topics
from streams.runtime.runner import StageRunner, consumer_config, run_round
from streams.runtime.stage import StageContext
from streams.runtime.topics import create_topics
from streams.runtime.unordered import UnorderedInput
from streams.runtime.worker import kafka_context
from streams.settings import Settings
from streams.wire import formats as wire
from streams.wire import schemas

pytestmark = pytest.mark.integration
MIB = 1 << 20


def test_records_of_1_and_10_mib_are_dead_letters_and_the_worker_goes_on(
        broker_settings: Callable[..., Settings]) -> None:
    settings = broker_settings()
    create_topics(settings)
    encode = wire.Encoder(schemas.CLINICAL_EVENT).encode
    huge_note = encode(clinical_event(event_id="big1", note="n" * MIB))                # 1 MiB: over the record limit
    huge_code = encode(clinical_event(event_id="big10", code="I" * (10 * MIB)))        # 10 MiB
    long_id = encode(clinical_event(event_id="long", source_patient_id="p" * 200_000))  # 200 KB id: field_too_long
    valid = [encode(clinical_event(event_id=f"v{i}", source_patient_id=f"MRN-{i}")) for i in range(50)]
    # The test's producer may send what the engine's own outputs never could.
    producer = Producer(settings.kafka_config(**{"message.max.bytes": 16 * MIB}))
    for value in [*valid[:25], huge_note, huge_code, long_id, *valid[25:]]:
        producer.produce(settings.topic(topics.RAW), value=value, key=b"NL-AMC")
    assert producer.flush(30) == 0

    with running_stage(settings, "normalise") as (engine, _stage):
        wait_for(lambda: stage_events_in(engine, "normalise") >= 53, timeout=90, what="every record")
        wait_for(lambda: len(decode_all(settings, settings.topic(topics.NORMALISED), schemas.NORMALISED_EVENT)) >= 50,
                 what="the valid events after the large ones")
    letters = {d["reason"]: d for d in decode_all(settings, settings.topic(topics.DLQ), schemas.DEAD_LETTER)}
    assert set(letters) == {"too_large", "field_too_long"}
    too_large = [d for d in decode_all(settings, settings.topic(topics.DLQ), schemas.DEAD_LETTER)
                 if d["reason"] == "too_large"]
    assert sorted(d["original_size"] for d in too_large) == sorted([len(huge_note), len(huge_code)])
    for letter, original in zip(sorted(too_large, key=lambda d: d["original_size"]), [huge_note, huge_code],
                                strict=True):
        assert letter["original_sha256"] == hashlib.sha256(original).hexdigest()
        assert letter["original_value"] == original[:settings.dead_letter_max_bytes]
    assert letters["field_too_long"]["original_size"] is None  # small enough to keep whole (and replay)
    normalised = decode_all(settings, settings.topic(topics.NORMALISED), schemas.NORMALISED_EVENT)
    assert sorted(e["event_id"] for e in normalised) == sorted(f"v{i}" for i in range(50))


class OversizedOutputStage(UnorderedInput):
    """Publishes, for every input record, one output the broker's 1,000,000-byte limit refuses
    and one it takes."""

    name = "oversized"
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.read = 0

    def input_topics(self) -> list[str]:
        return [self.settings.topic(topics.RAW)]

    def assign(self, partitions: list[int]) -> None:
        pass

    def revoke(self, partitions: list[int]) -> None:
        pass

    def process(self, messages: list[Any], producer: Any) -> int:
        for m in messages:
            producer.produce(self.settings.topic(topics.NORMALISED), value=b"x" * (2 * MIB), key=m.key())
            producer.produce(self.settings.topic(topics.OBSERVATIONS), value=m.value(), key=m.key())
        self.read += len(messages)
        return len(messages)

    def tick(self, producer: Any) -> int:
        return 0

    def checkpoint(self, producer: Any) -> bool:
        return False



def test_an_output_the_broker_refuses_is_a_dead_letter_and_the_round_commits(
        broker_settings: Callable[..., Settings]) -> None:
    settings = broker_settings()
    create_topics(settings)
    producer = Producer(settings.kafka_config())
    for i in range(5):
        producer.produce(settings.topic(topics.RAW), value=f"record {i}".encode(), key=b"k")
    assert producer.flush(30) == 0
    context: StageContext = kafka_context(settings)
    stage = OversizedOutputStage(settings)
    runner = StageRunner(stage, settings, context.metrics)
    runner.open()
    try:
        wait_for(lambda: run_round([runner], 0.5) >= 0 and stage.read >= 5, timeout=60, what="the five records")
        for _ in range(3):  # the commits of the last round's inputs follow the next flush
            run_round([runner], 0.1)
    finally:
        runner.close()
    letters = decode_all(settings, settings.topic(topics.DLQ), schemas.DEAD_LETTER)
    assert [d["reason"] for d in letters] == ["unpublishable"] * 5
    assert {d["source_topic"] for d in letters} == {settings.topic(topics.NORMALISED)}
    assert all(d["original_size"] == 2 * MIB and len(d["original_value"]) == settings.dead_letter_max_bytes
               for d in letters)
    taken = [v for _k, v, _p in read_topic(settings, settings.topic(topics.OBSERVATIONS))]
    assert sorted(taken) == sorted(f"record {i}".encode() for i in range(5))
    raw = settings.topic(topics.RAW)
    reader = Consumer(consumer_config(settings, f"{settings.group_id}.oversized"))
    try:
        committed = reader.committed([TopicPartition(raw, p) for p in range(settings.partitions)], timeout=10)
    finally:
        reader.close()
    assert sum(max(tp.offset, 0) for tp in committed) == 5  # every input committed: no crash loop
    assert context.metrics.registry.get_sample_value(
        "rwe_dead_letters_total", {"stage": "oversized", "reason": "unpublishable", "site": "other"}) == 5
