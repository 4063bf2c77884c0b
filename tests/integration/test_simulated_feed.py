"""A simulated hospital feed through the real broker: the manifest is what comes out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from helpers import read_topic, wait_for

from streams.runtime import topics
from streams.runtime.runner import producer_config
from streams.runtime.topics import create_topics
from streams.runtime.worker import Worker, kafka_context
from streams.settings import Settings
from streams.simulator import SimulationConfig, generate, publish
from streams.wire import formats as wire
from streams.wire import schemas

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("batch", [0, 200], ids=["one-event-per-message", "containers-of-200"])
def test_simulated_feed_comes_out_exactly_as_the_manifest_says(
        broker_settings: Callable[..., Settings], batch: int) -> None:
    settings = broker_settings()
    create_topics(settings)
    config = SimulationConfig(seed=11, patients_per_site=40, start=datetime(2025, 1, 1, tzinfo=UTC), days=120,
                              duplicate_rate=0.03, late_rate=0.03, malformed_rate=0.02)
    messages, manifest = generate(config)
    expected_events = manifest.valid + manifest.duplicates + sum(manifest.malformed.values())
    assert manifest.valid > 1000 and manifest.duplicates > 10 and len(manifest.malformed) >= 5

    engine = kafka_context(settings)
    worker = Worker(engine, ["normalise"])
    worker.start()
    try:
        publish(messages, Producer(producer_config(settings)), settings.topic(topics.RAW), batch=batch)
        registry = engine.metrics.registry
        wait_for(lambda: (registry.get_sample_value("rwe_stage_events_in_total", {"stage": "normalise"}) or 0)
                 >= expected_events, timeout=90, what=f"{expected_events} events")
    finally:
        worker.stop()
    assert not worker.errors

    out = read_topic(settings, settings.topic(topics.NORMALISED))
    normalised = [wire.Decoder(schemas.NORMALISED_EVENT).decode(v)[0] for _k, v, _p in out]
    ids = [(e["site_id"], e["event_id"]) for e in normalised]
    assert len(ids) == len(set(ids)) == manifest.valid
    assert Counter(e["site_id"] for e in normalised) == manifest.by_site

    letters = [wire.Decoder(schemas.DEAD_LETTER).decode(v)[0]
               for _k, v, _p in read_topic(settings, settings.topic(topics.DLQ))]
    assert Counter(d["reason"] for d in letters) == manifest.malformed
    assert all(d["original_value"] for d in letters)
    duplicates = sum(s.value for m in registry.collect() for s in m.samples if s.name == "rwe_duplicates_total")
    assert duplicates == manifest.duplicates

    # No source identifier (patient id, name) in any published event.
    blob = b"\n".join(v for _k, v, _p in out)
    leaked = [i for i in manifest.source_patient_ids if i.encode() in blob]
    assert leaked == []
    # Every area's concepts arrive mapped.
    concepts = Counter(c for e in normalised for c in e["concepts"])
    for concept in ("heart_failure", "acute_myocardial_infarction", "radical_prostatectomy", "psa", "aml",
                    "dementia", "mmse"):
        assert concepts[concept] > 0, concept
