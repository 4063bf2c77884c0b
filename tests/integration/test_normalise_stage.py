"""The normalise stage on the real embedded broker: exact outputs, dead letters, restarts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import clinical_event
from helpers import decode_all, read_topic, wait_for

from streams.cli.dlq import replay
from streams.runtime import topics
from streams.runtime.producer import send_all
from streams.runtime.stage import StageContext
from streams.runtime.topics import create_topics
from streams.runtime.worker import Worker, kafka_context
from streams.settings import Settings
from streams.wire import formats as wire
from streams.wire import schemas

pytestmark = pytest.mark.integration


@contextmanager
def running_worker(settings: Settings) -> Iterator[StageContext]:
    engine = kafka_context(settings)
    worker = Worker(engine, ["normalise"])
    worker.start()
    try:
        yield engine
    finally:
        worker.stop()
    assert not worker.errors


def events_in(engine: StageContext) -> float:
    return engine.metrics.registry.get_sample_value("rwe_stage_events_in_total", {"stage": "normalise"}) or 0.0


def send_raw(settings: Settings, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer(settings.kafka_config())
    for v in values:
        producer.produce(settings.topic(topics.RAW), value=v, key=b"NL-AMC")
    assert producer.flush(30) == 0


def test_a_mixed_feed_gives_exactly_the_expected_outputs(broker_settings: Callable[..., Settings]) -> None:
    settings = broker_settings()
    create_topics(settings)
    valid = [clinical_event(event_id=f"v{i}", source_patient_id=f"MRN-{i % 37}") for i in range(300)]
    bad_site = clinical_event(event_id="x1", site_id="XX-UNKNOWN")
    negative_psa = clinical_event(event_id="x2", event_type="LAB_RESULT", code_system="LOINC", code="2857-1",
                                  value=-3.0, unit="ng/mL")
    conflicting = clinical_event(event_id="v5", source_patient_id="MRN-5", note="changed")
    garbage = b"not avro at all"
    encoder = wire.Encoder(schemas.CLINICAL_EVENT)
    batch = [clinical_event(event_id=f"b{i}", source_patient_id=f"MRN-B{i}") for i in range(1000)]

    with running_worker(settings) as engine:
        send_all(settings, [*valid, valid[0], valid[1], bad_site, negative_psa, conflicting])
        send_all(settings, [*batch, batch[3]], batch=250)  # containers, with a duplicate inside
        send_raw(settings, [garbage])
        wait_for(lambda: events_in(engine) >= 300 + 5 + 1001 + 1, what="the stage to read every event")

    out = read_topic(settings, settings.topic(topics.NORMALISED))
    decoded = [wire.Decoder(schemas.NORMALISED_EVENT).decode(v)[0] for _k, v, _p in out]
    assert sorted(d["event_id"] for d in decoded) == sorted([f"v{i}" for i in range(300)]
                                                             + [f"b{i}" for i in range(1000)])
    assert all(k == d["patient_pseudonym"].encode() for (k, _v, _p), d in zip(out, decoded, strict=True))
    # Co-partitioning: one patient's events all on one partition.
    partitions_of: dict[str, set[int]] = {}
    for (_k, _v, p), d in zip(out, decoded, strict=True):
        partitions_of.setdefault(d["patient_pseudonym"], set()).add(p)
    assert all(len(ps) == 1 for ps in partitions_of.values())

    letters = decode_all(settings, settings.topic(topics.DLQ), schemas.DEAD_LETTER)
    assert Counter(d["reason"] for d in letters) == {
        "unknown_site": 1, "out_of_range": 1, "duplicate_conflict": 1, "undecodable": 1}
    by_reason = {d["reason"]: d for d in letters}
    assert by_reason["undecodable"]["original_value"] == garbage
    assert by_reason["unknown_site"]["original_value"] == encoder.encode(bad_site)
    assert by_reason["out_of_range"]["source_topic"] == settings.topic(topics.RAW)
    assert "MRN" not in by_reason["out_of_range"]["message"]

    # No source identifier anywhere in the published events.
    blob = b"".join(v for _k, v, _p in out)
    for identifier in (b"MRN-", b"Jan Jansen", b"Dam 1", b"free text", b"ENC-1"):
        assert identifier not in blob

    registry = engine.metrics.registry
    assert registry.get_sample_value("rwe_duplicates_total", {"stage": "normalise", "site": "NL-AMC"}) == 3
    assert registry.get_sample_value("rwe_dead_letters_total",
                                     {"stage": "normalise", "reason": "unknown_site", "site": "other"}) == 1


def test_dedupe_state_survives_a_restart(broker_settings: Callable[..., Settings]) -> None:
    settings = broker_settings()
    create_topics(settings)
    first = [clinical_event(event_id=f"r{i}") for i in range(400)]
    with running_worker(settings) as engine:
        send_all(settings, first)
        wait_for(lambda: events_in(engine) >= 400, what="the first half")
    # A new worker (same group) restores dedupe state from the changelog: resends are dropped.
    with running_worker(settings) as engine:
        send_all(settings, [*first[:100], *[clinical_event(event_id=f"s{i}") for i in range(50)]])
        wait_for(lambda: events_in(engine) >= 150, what="the resends")
        restored = engine.metrics.registry.get_sample_value("rwe_changelog_restored_records_total",
                                                            {"stage": "normalise"})
        assert restored and restored > 0
    ids = [d["event_id"] for d in decode_all(settings, settings.topic(topics.NORMALISED), schemas.NORMALISED_EVENT)]
    assert len(ids) == len(set(ids)) == 450


def test_dead_letters_replay_after_a_fix(broker_settings: Callable[..., Settings], tmp_path: Any) -> None:
    from streams.catalogue.sites import DEFAULT_SITES_FILE

    settings = broker_settings()
    create_topics(settings)
    newcomer = [clinical_event(event_id=f"n{i}", site_id="IT-NEW", time_zone="Europe/Rome") for i in range(20)]
    with running_worker(settings) as engine:
        send_all(settings, newcomer)
        wait_for(lambda: events_in(engine) >= 20, what="the newcomer's events")
    assert len(decode_all(settings, settings.topic(topics.DLQ), schemas.DEAD_LETTER)) == 20

    # The fix: the new site joins the configured network. Then replay the dead letters.
    sites = tmp_path / "sites.toml"
    sites.write_text(DEFAULT_SITES_FILE.read_text() + '\n[[site]]\nid = "IT-NEW"\nname = "New"\n'
                     'region = "IT-25"\ncountry = "IT"\ntime_zone = "Europe/Rome"\n')
    fixed = settings.with_(sites_file=sites)
    assert replay(fixed, reasons=["unknown_site"]) == 0
    with running_worker(fixed) as engine:
        wait_for(lambda: events_in(engine) >= 20, what="the replayed events")
    ids = {d["event_id"] for d in decode_all(settings, settings.topic(topics.NORMALISED), schemas.NORMALISED_EVENT)}
    assert ids == {f"n{i}" for i in range(20)}
