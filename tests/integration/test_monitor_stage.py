"""The monitor stage on the real embedded broker: an injected odds ratio of 2 at one site
raises that site's CUSUM alert (and no other), alerts are Avro records on the compacted
alerts topic, a restart mid-way changes no chart, and the normaliser's site activity
reaches the feed-health checks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import Producer
from helpers import decode_all, running_stage, stage_events_in, wait_for

from agents.monitor import MonitorStage, monitor_config
from streams.catalogue.definitions import load_catalogue
from streams.cli.alerts import latest as latest_alerts
from streams.cli.alerts import open_alerts, render
from streams.indicators.rolling import follow_up_us
from streams.monitoring.feed_health import FeedHealth
from streams.monitoring.partition_monitor import MonitorState
from streams.runtime import topics
from streams.runtime.partitioning import partition_for
from streams.runtime.runner import producer_config
from streams.runtime.stage import StageContext
from streams.runtime.topics import create_topics
from streams.settings import Settings
from streams.vocabulary.time import DAY_US
from streams.wire import formats as wire
from streams.wire import schemas

pytestmark = pytest.mark.integration

CATALOGUE = load_catalogue()
PROP = "hf_mortality_30d"
SITES = ("DE-CHA", "DE-LMU", "ES-HCB", "FI-HUS", "GB-UCL", "NL-AMC")
SHIFTED = "FI-HUS"
T0 = 1_735_689_600_000_000  # 2025-01-01T00:00Z
SPACING = DAY_US // 12       # the network's admissions: 12 a day, 2 per site
RISKS = (0.04, 0.07, 0.1, 0.14, 0.2, 0.3)


def observations(n: int, shift_from: int, seed: int = 4) -> list[dict[str, Any]]:
    """``n`` FINAL observations round-robin over the sites; from index ``shift_from`` the
    shifted site's odds of death are doubled against its expected risks."""
    rng = random.Random(seed)
    ind = CATALOGUE.indicators[PROP]
    out = []
    for i in range(n):
        site = SITES[i % len(SITES)]
        p = rng.choice(RISKS)
        odds = p / (1 - p) * (2.0 if site == SHIFTED and i >= shift_from else 1.0)
        death = rng.random() < odds / (1 + odds)
        index_time = T0 + i * SPACING
        closed = index_time + (rng.randrange(ind.horizon_us) if death else ind.horizon_us)
        out.append({"observation_id": f"{PROP}/{i}", "indicator": PROP, "area": ind.area,
                    "catalogue_version": CATALOGUE.version, "site_id": site, "region": "r", "country": "c",
                    "status": "FINAL", "index_time": index_time, "horizon_end": index_time + ind.horizon_us,
                    "closed_time": closed, "outcome": int(death), "value": None, "expected": p, "exclusion": None,
                    "covariates": {}})
    # The ascertain stage finalises in event-time (closed_time) order.
    return sorted(out, key=lambda r: r["closed_time"])


def send(settings: Settings, records: list[dict[str, Any]], extra: tuple[bytes, ...] = ()) -> None:
    encoder = wire.Encoder(schemas.OUTCOME_OBSERVATION)
    producer = Producer(producer_config(settings))
    topic = settings.topic(topics.OBSERVATIONS)
    partition = partition_for(PROP.encode(), settings.partitions)
    for r in records:
        producer.produce(topic, value=encoder.encode(r), key=f"{PROP}|{r['site_id']}".encode(), partition=partition)
    for value in extra:
        producer.produce(topic, value=value, key=b"junk", partition=partition)
    assert producer.flush(30) == 0


@contextmanager
def running(settings: Settings, stages: tuple[str, ...] = ("monitor",)) -> Iterator[tuple[StageContext, MonitorStage]]:
    with running_stage(settings, "monitor", stages) as (engine, stage):
        assert isinstance(stage, MonitorStage)
        yield engine, stage


def events_in(engine: StageContext) -> float:
    return stage_events_in(engine, "monitor")


def charts(readings: list[Any]) -> list[Any]:
    return sorted(r for r in readings if r.method in ("cusum_up", "cusum_down", "vlad"))


def test_an_odds_ratio_of_two_at_one_site_raises_its_cusum_alert(broker_settings: Any) -> None:
    settings = broker_settings(monitor_arl0=5000.0)
    create_topics(settings)
    n, shift_from = 9000, 4500
    shift_start = T0 + shift_from * SPACING
    with running(settings) as (engine, stage):
        send(settings, observations(n, shift_from), extra=(b"not avro",))
        wait_for(lambda: events_in(engine) >= n + 1, timeout=90, what="every observation")
        wait_for(lambda: any(a["method"] == "cusum_up" for a in stage.open_alerts()), timeout=30,
                 what="the open CUSUM alert")
        assert engine.metrics.registry.get_sample_value("rwe_dead_letters_total", {
            "stage": "monitor", "reason": "undecodable", "site": "other"}) == 1
        in_process = stage.open_alerts()
        readings = stage.readings()

    published = decode_all(settings, settings.topic(topics.ALERTS), schemas.ALERT)
    cusum = [a for a in published if a["method"] == "cusum_up"]
    assert {a["scope_id"] for a in cusum} == {SHIFTED}, cusum
    opened = next(a for a in cusum if a["status"] == "OPEN")
    assert opened["first_seen"] > shift_start
    detection_days = (opened["first_seen"] - shift_start) / DAY_US
    shifted_patients = sum(1 for i in range(shift_from, n) if SITES[i % 6] == SHIFTED
                           and T0 + i * SPACING <= opened["first_seen"])
    print(f"\ntime to detection: {detection_days:.0f} days of event time, {shifted_patients} patients of "
          f"{SHIFTED} admitted since the shift (ARL0 5000, odds ratio 2, 2 patients a day)")
    assert detection_days < 365
    assert opened["alert_id"] == f"cusum_up:{PROP}:{SHIFTED}:{opened['first_seen']}"
    assert opened["severity"] == "CRITICAL" and opened["observed_expected"] > 1.5
    assert opened["numerator"] >= 5 and opened["denominator"] >= opened["numerator"]
    # the in-process view and the topic agree on what is open
    from_topic = open_alerts(latest_alerts(settings))
    assert {a["alert_id"] for a in from_topic} == {a["alert_id"] for a in in_process}
    table = render(from_topic, as_json=False).splitlines()
    assert table[0] == f"{len(from_topic)} open alerts" and "CRITICAL  cusum_up" in table[2] and SHIFTED in table[2]
    assert opened["alert_id"] in render(from_topic, as_json=True)
    by_method = {(r.site, r.method): r for r in readings}
    assert by_method[(SHIFTED, "cusum_up")].limit == pytest.approx(by_method[("DE-CHA", "cusum_up")].limit, rel=0.1)
    assert by_method[(SHIFTED, "vlad")].statistic < -10  # many more deaths than expected
    assert by_method[(SHIFTED, "funnel")].statistic > 3


def test_a_restart_mid_way_changes_no_chart(broker_settings: Any) -> None:
    settings = broker_settings(monitor_arl0=500.0)
    create_topics(settings)
    records = observations(3000, 1500, seed=8)
    half = len(records) // 2
    state = MonitorState({PROP: (False, follow_up_us(CATALOGUE.indicators[PROP]))}, monitor_config(settings),
                         FeedHealth(settings.feed_silence, settings.feed_dlq_rate))
    for r in records:  # the same records through the pure state, uninterrupted
        state.monitor(PROP).observe(r["observation_id"], r["site_id"], r["closed_time"], float(r["outcome"]),
                                    r["expected"], r["index_time"])
    with running(settings) as (engine, _stage):
        send(settings, records[:half])
        wait_for(lambda: events_in(engine) >= half, what="the first half")
    # A new worker restores the charts from the changelog and gets the rest, with the last
    # hundred records of the first half redelivered (they must change nothing).
    with running(settings) as (engine, stage):
        send(settings, records[half - 100:])
        wait_for(lambda: events_in(engine) >= len(records) - half + 100, timeout=90, what="the second half")
        wait_for(lambda: charts(stage.readings()) == charts(state.readings()), timeout=30, what="the same charts")
        assert engine.metrics.registry.get_sample_value("rwe_changelog_restored_records_total",
                                                        {"stage": "monitor"})
    alerts = {a["alert_id"]: a for a in decode_all(settings, settings.topic(topics.ALERTS), schemas.ALERT)}
    assert {k for k, a in alerts.items() if a["method"].startswith("cusum")} == {
        a["alert_id"] for a in state.alerts.changed.values() if a["method"].startswith("cusum")}


def test_site_activity_from_the_normaliser_reaches_feed_health(broker_settings: Any) -> None:
    from streams.simulator import SimulationConfig, generate, publish

    settings = broker_settings(feed_bucket=86_400.0, feed_silence=1.0)
    create_topics(settings)
    messages, manifest = generate(SimulationConfig(seed=3, patients_per_site=60, days=40))
    with running(settings, ("normalise", "monitor")) as (engine, stage):
        publish(messages, Producer(producer_config(settings)), settings.topic(topics.RAW))
        total = manifest.valid + manifest.duplicates + sum(manifest.malformed.values())
        wait_for(lambda: (engine.metrics.registry.get_sample_value(
            "rwe_stage_events_in_total", {"stage": "normalise"}) or 0) >= total, timeout=90, what="the feed")
        wait_for(lambda: {r.method for r in stage.readings()} >= {"ears_c1", "ears_c2", "ears_c3", "dlq_rate"},
                 timeout=30, what="feed-health readings")
        # the feed has stopped: after a second of wall clock every site is silent
        wait_for(lambda: {a["scope_id"] for a in stage.open_alerts() if a["method"] == "feed_silence"} == set(SITES),
                 timeout=30, what="feed-silence alerts")
        silence = [r for r in stage.readings() if r.method == "feed_silence"]
        assert {r.site for r in silence} == set(SITES) and all(r.signalled and r.statistic > 1.0 for r in silence)
        assert all(r.indicator == "" for r in stage.readings() if r.method.startswith("ears"))
