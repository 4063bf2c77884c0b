"""The aggregate stage on the real embedded broker: published indicator snapshots,
disclosure control, dead letters, and a restart that changes no published value."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import Producer
from helpers import read_topic, running_stage, stage_events_in, wait_for

from agents.aggregate import AggregateStage
from streams.catalogue.definitions import load_catalogue
from streams.indicators.rolling import RollingState
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
PROP, CONT = "hf_mortality_30d", "hf_length_of_stay"
T = 1_735_689_600_000_000  # 2025-01-01T00:00Z
GEO = {"S1": ("R1", "NL"), "S3": ("R1", "NL"), "S2": ("R2", "NL")}  # R2 has one site


def observation(oid: str, indicator: str, site: str, index_time: int, status: str, outcome: int | None = None,
                value: float | None = None, closed_time: int | None = None, exclusion: str | None = None,
                expected: float | None = None) -> dict[str, Any]:
    ind = CATALOGUE.indicators[indicator]
    region, country = GEO[site]
    return {"observation_id": oid, "indicator": indicator, "area": ind.area, "catalogue_version": CATALOGUE.version,
            "site_id": site, "region": region, "country": country, "status": status, "index_time": index_time,
            "horizon_end": index_time + ind.horizon_us, "closed_time": closed_time, "outcome": outcome,
            "value": value, "expected": expected, "exclusion": exclusion, "covariates": {"age": 70.0}}


def feed() -> list[dict[str, Any]]:
    """A few hundred observations: each opened, most finalised, some excluded or superseded."""
    rng = random.Random(7)
    out: list[dict[str, Any]] = []
    counts = {(PROP, "S1"): (60, 15), (PROP, "S3"): (3, 1), (PROP, "S2"): (40, 0),
              (CONT, "S1"): (30, None), (CONT, "S3"): (20, None), (CONT, "S2"): (3, None)}
    for (indicator, site), (n, positives) in counts.items():
        for i in range(n):
            oid = f"{indicator}/{site}/{i}"
            t = T + rng.randrange(10 * DAY_US)
            out.append(observation(oid, indicator, site, t, "OPEN"))
            if indicator == PROP:
                outcome = 1 if i < (positives or 0) else 0
                closed = t + (rng.randrange(30 * DAY_US) if outcome else 30 * DAY_US)
                out.append(observation(oid, indicator, site, t, "FINAL", outcome=outcome, closed_time=closed,
                                       expected=0.1))
            else:
                out.append(observation(oid, indicator, site, t, "FINAL", value=round(rng.uniform(1, 20), 2),
                                       closed_time=t + DAY_US))
        # Two more per site and indicator: one excluded, one opened then superseded.
        t = T + rng.randrange(10 * DAY_US)
        out.append(observation(f"{indicator}/{site}/x", indicator, site, t, "EXCLUDED", exclusion="missing_baseline",
                               closed_time=t))
        out.append(observation(f"{indicator}/{site}/s", indicator, site, t, "OPEN"))
        out.append(observation(f"{indicator}/{site}/s", indicator, site, t, "EXCLUDED", exclusion="superseded",
                               closed_time=t))
    rng.shuffle(out)
    return _per_observation_order(out)


def _per_observation_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shuffled records with each observation's own records back in order (OPEN first),
    keeping the interleaving of observations."""
    rank = {"OPEN": 0, "FINAL": 1, "EXCLUDED": 1}
    slots: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        slots.setdefault(r["observation_id"], []).append(i)
    result = list(records)
    for positions in slots.values():
        mine = sorted((records[i] for i in positions), key=lambda r: rank[r["status"]])
        for pos, r in zip(positions, mine, strict=True):
            result[pos] = r
    return result


# An index event 45 days on moves the clock: hf_mortality_30d windows end at T + 15 d, after
# every other index time; its own follow-up is not over, so it is in no window.
CLOCK = observation("clock", PROP, "S1", T + 45 * DAY_US, "OPEN")


def send(settings: Settings, records: list[dict[str, Any]], extra: list[tuple[bytes, int]] | None = None) -> None:
    encoder = wire.Encoder(schemas.OUTCOME_OBSERVATION)
    producer = Producer(producer_config(settings))
    topic = settings.topic(topics.OBSERVATIONS)
    for r in records:
        producer.produce(topic, value=encoder.encode(r), key=f"{r['indicator']}|{r['site_id']}".encode(),
                         partition=partition_for(r["indicator"].encode(), settings.partitions))
    for value, partition in extra or []:
        producer.produce(topic, value=value, key=b"junk", partition=partition)
    assert producer.flush(30) == 0


def expected_snapshots(records: list[dict[str, Any]], settings: Settings) -> dict[str, dict[str, Any]]:
    """What the stage must publish: the pure rolling state of each partition (each has
    its own event-time clock) over the same records."""
    states: dict[int, RollingState] = {}
    for r in records:
        partition = partition_for(r["indicator"].encode(), settings.partitions)
        states.setdefault(partition, RollingState(CATALOGUE)).upsert(r)
    return {k: v for state in states.values() for ind in state.indicators
            for k, v in state.snapshots(ind, settings.min_cell_count, settings.cell_rounding).items()}


def without_clock(snapshots: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {f: v for f, v in s.items() if f != "as_of"} for k, s in snapshots.items()}


def latest_on(settings: Settings, topic: str) -> dict[str, dict[str, Any]]:
    decoder = wire.Decoder(schemas.INDICATOR_SNAPSHOT)
    latest: dict[str, dict[str, Any]] = {}
    for key, value, _p in read_topic(settings, settings.topic(topic)):
        assert key is not None
        latest[key.decode()] = decoder.decode(value)[0]
    return latest


@contextmanager
def running_worker(settings: Settings) -> Iterator[tuple[StageContext, AggregateStage]]:
    with running_stage(settings, "aggregate") as (engine, stage):
        assert isinstance(stage, AggregateStage)
        yield engine, stage


def events_in(engine: StageContext) -> float:
    return stage_events_in(engine, "aggregate")


def test_indicators_are_published_with_small_cells_suppressed(broker_settings: Any) -> None:
    settings = broker_settings(min_cell_count=5)
    create_topics(settings)
    records = [*feed(), CLOCK]
    bad = observation("bad", PROP, "S1", T, "FINAL", outcome=None, closed_time=T)  # FINAL without an outcome
    expected = expected_snapshots(records, settings)
    with running_worker(settings) as (engine, stage):
        send(settings, [*records, bad, *records[-2:]],  # and the last two redelivered
             extra=[(b"not avro", partition_for(PROP.encode(), settings.partitions))])
        wait_for(lambda: without_clock(stage.latest_snapshots()) == without_clock(expected), timeout=90,
                 what="the final snapshots")
        registry = engine.metrics.registry
        assert registry.get_sample_value("rwe_aggregate_observations_total",
                                         {"indicator": PROP, "status": "SUPERSEDED"}) == 3
        assert registry.get_sample_value("rwe_dead_letters_total", {
            "stage": "aggregate", "reason": "invalid_observation", "site": "other"}) == 1
        assert registry.get_sample_value("rwe_dead_letters_total", {
            "stage": "aggregate", "reason": "undecodable", "site": "other"}) == 1

    published = latest_on(settings, topics.INDICATORS)
    assert without_clock(published) == without_clock(expected)
    assert len(published) == 2 * 4 * (3 + 2 + 1 + 1)  # indicators x windows x (sites, regions, country, network)

    def at(indicator: str, scope: str, scope_id: str, window: str = "30") -> dict[str, Any]:
        return published[f"{indicator}|{scope}|{scope_id}|{window}"]

    s1 = at(PROP, "SITE", "S1")
    assert (s1["suppressed"], s1["denominator"], s1["numerator"], s1["pending"], s1["excluded"]) == (
        True, None, None, None, None)  # S1 complements S3 (3 patients); its 1 exclusion and its 1 index
    # event still in follow-up (the clock record) are small
    s2 = at(PROP, "SITE", "S2")
    assert (s2["suppressed"], s2["denominator"], s2["numerator"], s2["proportion"], s2["ci_low"]) == (
        False, 40, 0, 0.0, 0.0)  # a zero numerator is published
    assert s2["expected"] == pytest.approx(4.0)
    assert at(PROP, "SITE", "S3")["suppressed"] is True
    r1 = at(PROP, "REGION", "R1")
    assert (r1["suppressed"], r1["denominator"], r1["numerator"]) == (False, 63, 16)
    net = at(PROP, "NETWORK", "network", "all")
    assert (net["denominator"], net["numerator"], net["pending"], net["provisional_numerator"]) == (
        103, 16, None, 0)  # the one index event in follow-up is small; no outcome among it yet (0 is shown)
    assert net["proportion"] == pytest.approx(16 / 103)
    # Continuous: S2 (3 values) is alone in R2, so R2 goes, then R1 as NL's other region,
    # then R1's smaller site S3 so R1 cannot be summed back.
    hidden = {k for k, s in published.items() if k.startswith(CONT) and k.endswith("|90") and s["suppressed"]}
    assert hidden == {f"{CONT}|SITE|S2|90", f"{CONT}|REGION|R2|90", f"{CONT}|REGION|R1|90", f"{CONT}|SITE|S3|90"}
    assert at(CONT, "NETWORK", "network")["mean"] is not None and at(CONT, "SITE", "S1")["median"] is not None

    federated = latest_on(settings, topics.NETWORK)
    assert set(federated) == {k for k, s in published.items() if s["scope"] in ("COUNTRY", "NETWORK")}
    assert without_clock(federated) == {k: without_clock(published)[k] for k in federated}


def test_a_restart_mid_way_changes_no_published_indicator(broker_settings: Any) -> None:
    settings = broker_settings(min_cell_count=5)
    create_topics(settings)
    records = [*feed(), CLOCK]
    half = len(records) // 2
    expected = expected_snapshots(records, settings)

    with running_worker(settings) as (engine, stage):
        send(settings, records[:half])
        wait_for(lambda: events_in(engine) >= half, what="the first half")
        wait_for(lambda: without_clock(stage.latest_snapshots()) == without_clock(
            expected_snapshots(records[:half], settings)), timeout=60, what="the first half's snapshots")
    # A new worker restores the state from the changelog, republishes the same values,
    # then gets the rest, with the last ten records of the first half redelivered.
    with running_worker(settings) as (engine, stage):
        wait_for(lambda: without_clock(stage.latest_snapshots()) == without_clock(
            expected_snapshots(records[:half], settings)), timeout=60, what="the restored snapshots")
        send(settings, records[half - 10:])
        wait_for(lambda: events_in(engine) >= len(records) - half + 10, what="the second half")
        wait_for(lambda: without_clock(stage.latest_snapshots()) == without_clock(expected), timeout=60,
                 what="the final snapshots")
        restored = engine.metrics.registry.get_sample_value("rwe_changelog_restored_records_total",
                                                            {"stage": "aggregate"})
        assert restored and restored > 0

    assert without_clock(latest_on(settings, topics.INDICATORS)) == without_clock(expected)
