"""Normalise + ascertain on the real broker: stream == batch, redelivery, restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from conftest import TEST_KEY, clinical_event
from helpers import read_topic, wait_for

from streams.batch.evaluate import evaluate
from streams.clinical.pseudonym import Pseudonymiser
from streams.indicators.rolling import window_key
from streams.outcomes.timeline import DAY_US
from streams.runtime import topics
from streams.runtime.partitioning import partition_for
from streams.runtime.runner import producer_config
from streams.runtime.stage import StageContext
from streams.runtime.topics import create_topics
from streams.runtime.worker import Worker, kafka_context
from streams.settings import Settings
from streams.simulator import SimulationConfig, records
from streams.wire import formats as wire
from streams.wire import schemas
from streams.wire.formats import encode_container

pytestmark = pytest.mark.integration
START = datetime(2022, 1, 1, tzinfo=UTC)
DAYS = 150
FIELDS = ("status", "outcome", "value", "exclusion", "closed_time", "index_time", "horizon_end", "site_id",
          "indicator", "covariates", "expected")


def closing_events(partitions: int) -> list[dict[str, Any]]:
    """Deaths of stand-in patients long after the feed, one on every partition: they move every
    partition's watermark past every horizon, so the stream finalises what the batch run does."""
    pseudonyms = Pseudonymiser(TEST_KEY.encode())
    when = int((START + timedelta(days=DAYS + 900)).replace(tzinfo=None).timestamp() * 1e6)
    events, covered, i = [], set(), 0
    while len(covered) < partitions:
        pid = f"CLOSE-{i}"
        p = partition_for(pseudonyms.patient(pid, None, "NL-AMC").encode(), partitions)
        if p not in covered:
            covered.add(p)
            events.append(clinical_event(event_id=f"close-{i}", source_patient_id=pid, event_type="DEATH",
                                         encounter_id=None, code_system=None, code=None, time_zone=None,
                                         event_time=when, recorded_time=when))
        i += 1
    return events


@contextmanager
def worker(settings: Settings) -> Iterator[StageContext]:
    engine = kafka_context(settings)
    w = Worker(engine, ["normalise", "ascertain", "aggregate"])
    w.start()
    try:
        yield engine
    finally:
        w.stop()
    assert not w.errors


def events_in(engine: StageContext, stage: str) -> float:
    return engine.metrics.registry.get_sample_value("rwe_stage_events_in_total", {"stage": stage}) or 0.0


def publish_events(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = Producer(producer_config(settings))
    for i in range(0, len(events), 300):  # containers, keyed by site like a real backfill
        chunk = events[i:i + 300]
        producer.produce(settings.topic(topics.RAW), value=encode_container(schemas.CLINICAL_EVENT, chunk),
                         key=b"backfill")
    assert producer.flush(30) == 0


def latest_observations(settings: Settings) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    decoder = wire.Decoder(schemas.OUTCOME_OBSERVATION)
    for key, value, partition in read_topic(settings, settings.topic(topics.OBSERVATIONS)):
        obs = decoder.decode(value)[0]
        assert key == f"{obs['indicator']}|{obs['site_id']}".encode()
        assert partition == partition_for(obs["indicator"].encode(), settings.partitions)
        latest[obs["observation_id"]] = obs
    return {k: v for k, v in latest.items() if v["exclusion"] != "superseded"}


def latest_snapshots(settings: Settings) -> dict[str, dict[str, Any]]:
    decoder = wire.Decoder(schemas.INDICATOR_SNAPSHOT)
    return {key.decode(): decoder.decode(value)[0]
            for key, value, _p in read_topic(settings, settings.topic(topics.INDICATORS)) if key}


def without_as_of(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {f: v for f, v in s.items() if f != "as_of"} for k, s in cells.items()}


def comparable(observations: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {k: tuple(o[f] for f in FIELDS) for k, o in observations.items()}


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    config = SimulationConfig(seed=21, patients_per_site=60, start=START, days=DAYS, duplicate_rate=0.03,
                              late_rate=0.05, late_max_hours=30, malformed_rate=0.01)
    events = [*records(config), *closing_events(2)]
    path = tmp_path_factory.mktemp("feed") / "events.avro"
    path.write_bytes(encode_container(schemas.CLINICAL_EVENT, events))
    return events, path


def run_stream(settings: Settings, events: list[dict[str, Any]], restart_after: int | None = None
               ) -> dict[str, dict[str, Any]]:
    """Run normalise + ascertain over ``events`` (with a worker restart after ``restart_after``)."""
    create_topics(settings)
    parts = [events] if restart_after is None else [events[:restart_after], events[restart_after:]]
    normalised_before = 0
    for part in parts:
        sent = len(part)
        with worker(settings) as engine:
            publish_events(settings, part)
            wait_for(lambda e=engine, n=sent: events_in(e, "normalise") >= n, timeout=120,
                     what="normalise to read the feed")
            settle(settings, topics.NORMALISED)
            normalised = len(read_topic(settings, settings.topic(topics.NORMALISED)))
            wait_for(lambda e=engine, n=normalised - normalised_before: events_in(e, "ascertain") >= n,
                     timeout=120, what="ascertain to catch up")
            settle(settings, topics.OBSERVATIONS)
            settle(settings, topics.INDICATORS)
        normalised_before = normalised
    return latest_observations(settings)


def settle(settings: Settings, topic: str, quiet: float = 1.5) -> None:
    """Wait until ``topic`` stops growing."""
    import time

    last, since = -1, time.monotonic()
    while time.monotonic() - since < quiet:
        n = len(read_topic(settings, settings.topic(topic)))
        if n != last:
            last, since = n, time.monotonic()
        time.sleep(0.3)


def test_stream_equals_batch(broker_settings: Callable[..., Settings], feed: tuple[list[Any], Path]) -> None:
    events, path = feed
    settings = broker_settings(allowed_lateness=3 * 86400.0)
    stream = run_stream(settings, events)
    batch = evaluate(path, settings)
    assert batch.late == 0 and batch.duplicates > 0
    batch_obs = {k: v for k, v in batch.observations.items() if v["exclusion"] != "superseded"}
    assert len(batch_obs) > 300
    # the closing events closed every horizon; a stay still open when the feed ends is a pending length of stay
    assert {o["status"] for o in batch_obs.values() if o["indicator"] != "hf_length_of_stay"} <= {"FINAL", "EXCLUDED"}
    assert any(o["status"] == "OPEN" for o in batch_obs.values() if o["indicator"] == "hf_length_of_stay")
    assert comparable(stream) == comparable(batch_obs)
    # Every FINAL observation carries its expected outcome from the catalogue's risk model.
    assert all(o["expected"] is not None for o in batch_obs.values() if o["status"] == "FINAL")
    indicators = {o["indicator"] for o in batch_obs.values()}
    assert len(indicators) >= 12, sorted(indicators)
    # The published indicators agree too, cell by cell (as_of is when a cell last changed).
    stream_cells = latest_snapshots(settings)
    batch_cells = {f"{s['indicator']}|{s['scope']}|{s['scope_id']}|{window_key(s['window_days'])}": s
                   for s in batch.snapshots}
    assert without_as_of(stream_cells) == without_as_of(batch_cells)
    assert sum(1 for s in batch_cells.values() if not s["suppressed"] and s["denominator"]) > 50
    assert sum(1 for s in stream_cells.values() if s["observed_expected"] is not None) > 50
    assert all(s["observed_expected"] is None for s in stream_cells.values() if s["suppressed"])


def test_redelivery_changes_nothing(broker_settings: Callable[..., Settings], feed: tuple[list[Any], Path]) -> None:
    events, _path = feed
    settings = broker_settings(allowed_lateness=3 * 86400.0)
    first = run_stream(settings, events[: len(events) // 2])
    before = len(read_topic(settings, settings.topic(topics.OBSERVATIONS)))
    # Redeliver every normalised event already processed, as a rebalance or retry would.
    normalised = read_topic(settings, settings.topic(topics.NORMALISED))
    with worker(settings) as engine:
        producer = Producer(producer_config(settings))
        for key, value, _p in normalised:
            producer.produce(settings.topic(topics.NORMALISED), value=value, key=key)
        assert producer.flush(30) == 0
        wait_for(lambda: events_in(engine, "ascertain") >= len(normalised), timeout=60, what="the redelivery")
        settle(settings, topics.OBSERVATIONS)
    assert len(read_topic(settings, settings.topic(topics.OBSERVATIONS))) == before
    assert latest_observations(settings) == first


def test_restart_in_the_middle_ends_like_an_uninterrupted_run(
        broker_settings: Callable[..., Settings], feed: tuple[list[Any], Path]) -> None:
    events, path = feed
    settings = broker_settings(allowed_lateness=3 * 86400.0)
    restarted = run_stream(settings, events, restart_after=len(events) // 2)
    batch = evaluate(path, settings)
    expected = {k: v for k, v in batch.observations.items() if v["exclusion"] != "superseded"}
    assert comparable(restarted) == comparable(expected)


def test_late_event_beyond_the_lateness_is_counted_not_applied(broker_settings: Callable[..., Settings]) -> None:
    settings = broker_settings(allowed_lateness=86400.0)
    create_topics(settings)
    base = int(datetime(2024, 6, 1, 12).timestamp() * 1e6)
    same_patient = {"source_patient_id": "P-LATE", "patient_id_issuer": None, "time_zone": None}
    feed = [clinical_event(event_id="adm", event_time=base, recorded_time=base, **same_patient),
            clinical_event(event_id="dx", event_type="DIAGNOSIS", event_time=base + 3600_000_000,
                           recorded_time=base + 3600_000_000, **same_patient),
            clinical_event(event_id="later", event_type="DEATH", encounter_id=None, code=None, code_system=None,
                           event_time=base + 10 * DAY_US, recorded_time=base + 10 * DAY_US, **same_patient),
            # two days older than the newest event on the partition: beyond one day of lateness
            clinical_event(event_id="too-late", event_type="DEATH", encounter_id=None, code=None,
                           code_system=None, event_time=base + 5 * DAY_US, recorded_time=base + 11 * DAY_US,
                           **same_patient)]
    with worker(settings) as engine:
        # Sent after the rest is processed: within one batch the normaliser would put it in order.
        publish_events(settings, feed[:3])
        wait_for(lambda: events_in(engine, "ascertain") >= 3, timeout=60, what="ascertain")
        publish_events(settings, feed[3:])
        wait_for(lambda: events_in(engine, "ascertain") >= 4, timeout=60, what="ascertain")
        late = engine.metrics.registry.get_sample_value("rwe_late_events_total", {"stage": "ascertain"})
        assert late == 1


def test_a_backlog_read_unevenly_loses_nothing_to_lateness(broker_settings: Callable[..., Settings],
                                                            feed: tuple[list[Any], Path]) -> None:
    """A backfill: the whole feed waits on the raw topic before the worker starts, as
    containers of one site each (weeks of event time per message), spread over the raw
    partitions. Read unevenly, it must still reach ascertain in event-time order."""
    events, path = feed
    settings = broker_settings(allowed_lateness=2 * 86400.0)  # the feed's own lateness is up to 30 h
    create_topics(settings)
    producer = Producer(producer_config(settings))
    by_site: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_site.setdefault(e["site_id"], []).append(e)
    for site, site_events in by_site.items():
        for i in range(0, len(site_events), 150):
            producer.produce(settings.topic(topics.RAW), key=site.encode(),
                             value=encode_container(schemas.CLINICAL_EVENT, site_events[i:i + 150]))
    assert producer.flush(30) == 0
    with worker(settings) as engine:
        wait_for(lambda: events_in(engine, "normalise") >= len(events), timeout=120, what="normalise")
        settle(settings, topics.NORMALISED)
        normalised = len(read_topic(settings, settings.topic(topics.NORMALISED)))
        wait_for(lambda: events_in(engine, "ascertain") >= normalised, timeout=120, what="ascertain")
        settle(settings, topics.OBSERVATIONS)
        late = engine.metrics.registry.get_sample_value("rwe_late_events_total", {"stage": "ascertain"})
    assert late == 0
    batch = evaluate(path, settings)
    expected = {k: v for k, v in batch.observations.items() if v["exclusion"] != "superseded"}
    assert comparable(latest_observations(settings)) == comparable(expected)


def test_a_multi_year_feed_gives_evaluate_exactly_the_stream_snapshots(
        broker_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """Two years with late (up to 60 days), out-of-order and duplicated events, default lateness:
    the late events revise, none is beyond the revision horizon, and rwe evaluate and the stream
    publish the same snapshot for every key, every field but as_of (the batch evaluator used to
    drop observations indexed over a year before the newest outcome from its snapshots)."""
    config = SimulationConfig(seed=33, patients_per_site=25, start=START, days=730, duplicate_rate=0.03,
                              late_rate=0.05, late_max_hours=60 * 24)
    events = [*records(config), *closing_events(2)]
    path = tmp_path / "two-years.avro"
    path.write_bytes(encode_container(schemas.CLINICAL_EVENT, events))
    settings = broker_settings(min_cell_count=1)  # every count visible
    stream_observations = run_stream(settings, events)
    batch = evaluate(path, settings)
    assert batch.duplicates > 0 and "beyond_revision_horizon" not in batch.rejected
    newest, behind = 0, 0  # events in the feed more than the allowed lateness behind the newest before them
    for e in events:
        behind += e["event_time"] < newest - 2 * 86_400_000_000
        newest = max(newest, e["event_time"])
    assert behind > 20
    batch_observations = {k: v for k, v in batch.observations.items() if v["exclusion"] != "superseded"}
    assert comparable(stream_observations) == comparable(batch_observations)
    stream_cells = latest_snapshots(settings)
    batch_cells = {f"{s['indicator']}|{s['scope']}|{s['scope_id']}|{window_key(s['window_days'])}": s
                   for s in batch.snapshots}
    assert without_as_of(stream_cells) == without_as_of(batch_cells)
    assert sum(1 for s in batch_cells.values() if s["denominator"]) > 100
