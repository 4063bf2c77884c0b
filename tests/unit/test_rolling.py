"""Rolling indicator state: windows, upserts, retention, restore, disclosure, and a
property: the incremental state always equals a recomputation from scratch."""

from __future__ import annotations

import itertools
import statistics as stdlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.catalogue.definitions import Catalogue, load_catalogue
from streams.indicators.rolling import (
    BEYOND_RETENTION,
    CHANGED,
    UNCHANGED,
    WINDOWS,
    RollingState,
    follow_up_us,
    snapshot_key,
)
from streams.indicators.statistics import exact_total, mean, median, sample_sd, to_float, wilson_interval
from streams.outcomes.record import problem
from streams.vocabulary.time import DAY_US
from streams.wire import formats as wire

CATALOGUE: Catalogue = load_catalogue()
PROP = "hf_mortality_30d"        # proportion, 30 d follow-up
CONT = "hf_length_of_stay"       # continuous, follow-up ends at discharge
T0 = 1_000 * DAY_US + 12 * 3600 * 1_000_000  # an arbitrary midday
GEO = {"A": ("R1", "NL"), "B": ("R1", "NL"), "C": ("R2", "NL"), "D": ("R3", "DE")}
_ids = itertools.count()


def obs(index_time: int, status: str = "FINAL", outcome: int | None = 0, site: str = "A", indicator: str = PROP,
        oid: str | None = None, closed_time: int | None = None, value: float | None = None,
        expected: float | None = None, exclusion: str | None = None) -> dict[str, Any]:
    region, country = GEO[site]
    return {"observation_id": oid or f"o{next(_ids)}", "indicator": indicator, "area": "cardiovascular",
            "catalogue_version": CATALOGUE.version, "site_id": site, "region": region, "country": country,
            "status": status, "index_time": index_time, "horizon_end": index_time + 30 * DAY_US,
            "closed_time": closed_time, "outcome": outcome, "value": value, "expected": expected,
            "exclusion": exclusion, "covariates": {}}


def clock_to(state: RollingState, t: int) -> None:
    state.advance(t)


def snap(state: RollingState, key: str, k: int = 1, rounding: int = 0) -> dict[str, Any]:
    indicator = key.split("|", maxsplit=1)[0]
    return state.snapshots(indicator, k, rounding)[key]


def test_problems_are_named() -> None:
    assert problem(obs(T0), CATALOGUE) is None
    assert problem(obs(T0, indicator="nope"), CATALOGUE) == "unknown indicator"
    assert "outcome" in (problem(obs(T0, outcome=None), CATALOGUE) or "")
    assert "value" in (problem(obs(T0, indicator=CONT, value=float("nan")), CATALOGUE) or "")
    assert problem(obs(T0, status="OPEN", outcome=None), CATALOGUE) is None
    assert "status" in (problem(obs(T0, status="DONE"), CATALOGUE) or "")


def test_window_boundaries_are_left_open_right_closed() -> None:
    state = RollingState(CATALOGUE)
    follow = follow_up_us(CATALOGUE.indicators[PROP])
    clock_to(state, T0)
    end = T0 - follow
    inside = [obs(end), obs(end - 30 * DAY_US + 1), obs(end - 10 * DAY_US, outcome=1)]
    on_lower_edge = obs(end - 30 * DAY_US)   # in the 90-day window, not the 30-day one
    after_end = obs(end + 1)                  # follow-up not over: in no window yet
    for r in [*inside, on_lower_edge, after_end]:
        assert state.upsert(r) == CHANGED
    assert state.as_of == T0
    assert snap(state, f"{PROP}|SITE|A|30")["denominator"] == 3
    assert snap(state, f"{PROP}|SITE|A|90")["denominator"] == 4
    assert snap(state, f"{PROP}|SITE|A|all")["denominator"] == 4
    s30 = snap(state, f"{PROP}|SITE|A|30")
    assert s30["numerator"] == 1 and s30["proportion"] == pytest.approx(1 / 3)
    assert (s30["ci_low"], s30["ci_high"]) == wilson_interval(1, 3)
    # One microsecond later the window has moved past the lower-edge observation of 30 d + 1 us.
    clock_to(state, T0 + 1)
    assert snap(state, f"{PROP}|SITE|A|30")["denominator"] == 3  # end+1 enters, end-30d+1 leaves
    assert snap(state, f"{PROP}|SITE|A|all")["denominator"] == 5


def test_the_clock_is_the_latest_closed_or_index_time() -> None:
    state = RollingState(CATALOGUE)
    state.upsert(obs(T0, status="OPEN", outcome=None))
    assert state.as_of == T0
    state.upsert(obs(T0 - DAY_US, closed_time=T0 + 5 * DAY_US))
    assert state.as_of == T0 + 5 * DAY_US
    state.upsert(obs(T0 - 9 * DAY_US))  # older: the clock never goes back
    assert state.as_of == T0 + 5 * DAY_US


def test_upsert_open_final_superseded() -> None:
    state = RollingState(CATALOGUE)
    t = T0 - 100 * DAY_US
    clock_to(state, T0)
    key = f"{PROP}|SITE|A|365"
    assert state.upsert(obs(t, status="OPEN", outcome=None, oid="x")) == CHANGED
    assert (snap(state, key)["pending"], snap(state, key)["denominator"]) == (1, 0)
    assert state.upsert(obs(t, status="FINAL", outcome=1, oid="x", closed_time=t + DAY_US)) == CHANGED
    s = snap(state, key)
    assert (s["pending"], s["denominator"], s["numerator"]) == (0, 1, 1)
    assert state.upsert(obs(t, status="EXCLUDED", outcome=None, oid="y", exclusion="missing_baseline")) == CHANGED
    assert snap(state, key)["excluded"] == 1
    assert state.upsert(obs(t, status="EXCLUDED", outcome=None, oid="x", exclusion="superseded")) == CHANGED
    s = snap(state, key)
    assert (s["pending"], s["denominator"], s["numerator"], s["excluded"]) == (0, 0, 0, 1)
    assert s["proportion"] is None and s["ci_low"] is None
    assert state.observation("x") is None and len(state) == 1
    # Retracting something never seen changes nothing.
    assert state.upsert(obs(t, status="EXCLUDED", outcome=None, oid="z", exclusion="superseded")) == UNCHANGED


def test_redelivery_changes_nothing() -> None:
    state = RollingState(CATALOGUE)
    records = [obs(T0 - i * DAY_US, outcome=i % 2, oid=f"r{i}", expected=0.25) for i in range(40)]
    for r in records:
        state.upsert(r)
    first = state.snapshots(PROP, 5)
    assert state.take_delta() != []
    assert all(state.upsert(r) == UNCHANGED for r in records)
    assert state.take_delta() == []
    assert state.snapshots(PROP, 5) == first


def test_continuous_estimates() -> None:
    state = RollingState(CATALOGUE)
    values = [2.0, 3.5, 7.25, 1.0, 12.0, 4.5]
    for i, v in enumerate(values):
        state.upsert(obs(T0 - i * DAY_US, indicator=CONT, outcome=None, value=v, site="C"))
    s = snap(state, f"{CONT}|SITE|C|30")
    assert s["kind"] == "CONTINUOUS" and s["unit"] == "days" and s["numerator"] is None
    assert s["denominator"] == 6
    assert s["mean"] == pytest.approx(stdlib.fmean(values))
    assert s["median"] == stdlib.median(values)
    assert s["sd"] == pytest.approx(stdlib.stdev(values))
    cumulative = snap(state, f"{CONT}|SITE|C|all")
    assert cumulative["mean"] == s["mean"] and cumulative["sd"] == s["sd"]
    assert cumulative["median"] == s["median"]  # exact in every window
    one = RollingState(CATALOGUE)
    one.upsert(obs(T0, indicator=CONT, outcome=None, value=3.0))
    assert snap(one, f"{CONT}|SITE|A|30")["sd"] is None


def test_expected_only_when_every_final_has_one() -> None:
    state = RollingState(CATALOGUE)
    clock_to(state, T0)
    state.upsert(obs(T0 - 40 * DAY_US, expected=0.1))
    state.upsert(obs(T0 - 41 * DAY_US, expected=0.2))
    key = f"{PROP}|SITE|A|30"
    assert snap(state, key)["expected"] == pytest.approx(0.3)
    state.upsert(obs(T0 - 42 * DAY_US, expected=None))
    assert snap(state, key)["expected"] is None
    assert snap(state, key)["observed_expected"] is None


def test_observed_expected_ratio() -> None:
    state = RollingState(CATALOGUE)
    clock_to(state, T0)
    for i in range(8):  # 3 events against 8 x 0.25 = 2 expected
        state.upsert(obs(T0 - (40 + i) * DAY_US, outcome=int(i < 3), oid=f"p{i}", expected=0.25))
    s = snap(state, f"{PROP}|SITE|A|30")
    assert (s["numerator"], s["expected"], s["observed_expected"]) == (3, 2.0, 1.5)
    for i, (value, expected) in enumerate([(4.0, 5.0), (8.0, 5.0), (3.0, 2.0)]):  # 15 against 12
        state.upsert(obs(T0 - (40 + i) * DAY_US, indicator=CONT, outcome=None, value=value, oid=f"c{i}",
                         expected=expected))
    assert snap(state, f"{CONT}|SITE|A|all")["observed_expected"] == 15 / 12
    suppressed = state.snapshots(PROP, min_cell_count=10)[f"{PROP}|SITE|A|30"]
    assert suppressed["suppressed"] and suppressed["expected"] is None and suppressed["observed_expected"] is None


def test_eviction_keeps_cumulative_totals() -> None:
    state = RollingState(CATALOGUE)
    old = [obs(T0 + i * DAY_US, outcome=int(i % 3 == 0), oid=f"old{i}", expected=0.5) for i in range(10)]
    for r in old:
        state.upsert(r)
    clock_to(state, T0 + 40 * DAY_US)
    before = snap(state, f"{PROP}|NETWORK|network|all")
    assert before["denominator"] == 10
    # A year, a follow-up and the revision horizon later, the old index days are evicted.
    clock_to(state, T0 + (10 + 365 + 31 + 365) * DAY_US)  # + the revision horizon
    assert state.evict() == 10 and len(state) == 0
    after = snap(state, f"{PROP}|NETWORK|network|all")
    assert {k: v for k, v in after.items() if k != "as_of"} == {k: v for k, v in before.items() if k != "as_of"}
    assert snap(state, f"{PROP}|NETWORK|network|365")["denominator"] == 0
    # A late record for an evicted observation would double count: it is not applied.
    assert state.upsert(dict(old[0], outcome=1)) == BEYOND_RETENTION
    assert snap(state, f"{PROP}|NETWORK|network|all")["numerator"] == before["numerator"]


def _roundtrip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    enc, dec = wire.Encoder("rwe.internal.AggregateDelta"), wire.Decoder("rwe.internal.AggregateDelta")
    return [dec.decode(enc.encode(r))[0] for r in records]


def _all_snapshots(state: RollingState, k: int = 1) -> dict[str, dict[str, Any]]:
    return {key: s for ind in state.indicators for key, s in state.snapshots(ind, k).items()}


def test_restore_from_snapshot_and_deltas_equals_the_live_state() -> None:
    live = RollingState(CATALOGUE)
    log: list[dict[str, Any]] = []
    for day in range(0, 900, 3):
        live.upsert(obs(T0 + day * DAY_US, status="OPEN", outcome=None, oid=f"p{day}", site="ABCD"[day % 4]))
        live.upsert(obs(T0 + day * DAY_US, outcome=int(day % 5 == 0), oid=f"p{day}", site="ABCD"[day % 4],
                        closed_time=T0 + (day + 2) * DAY_US, expected=0.1))
        live.upsert(obs(T0 + day * DAY_US, indicator=CONT, outcome=None, value=day / 7, site="ABCD"[day % 3]))
        if day % 30 == 0:
            live.evict()
            if day == 450:
                log = live.snapshot()  # compaction: everything before the snapshot is gone
            else:
                log.extend(live.take_delta() or [])
    live.evict()
    log.extend(live.take_delta() or [])
    restored = RollingState(CATALOGUE)
    for record in _roundtrip(log):
        restored.apply(record)
    restored.evict()
    assert len(restored) == len(live) and restored.as_of == live.as_of
    assert _all_snapshots(restored) == _all_snapshots(live)
    assert _all_snapshots(restored, 5) == _all_snapshots(live, 5)


def test_small_cells_and_complements_in_snapshots() -> None:
    state = RollingState(CATALOGUE)
    clock_to(state, T0)
    t = T0 - 40 * DAY_US
    rows = {"A": (30, 0), "B": (12, 6), "C": (3, 1)}  # site: (denominator, numerator)
    for site, (den, num) in rows.items():
        for i in range(den):
            state.upsert(obs(t, outcome=1 if i < num else 0, site=site))
    out = state.snapshots(PROP, 5)
    hidden = {key.split("|")[1] + "|" + key.split("|")[2] for key, s in out.items()
              if key.endswith("|30") and s["suppressed"]}
    # C (3) is small; R2 is C alone; R1 is then NL's only other region, and B is R1's smaller site.
    assert hidden == {"SITE|C", "REGION|R2", "REGION|R1", "SITE|B"}
    a = out[f"{PROP}|SITE|A|30"]
    assert (a["suppressed"], a["denominator"], a["numerator"], a["proportion"]) == (False, 30, 0, 0.0)
    assert a["ci_low"] == 0.0  # a zero numerator is published
    c = out[f"{PROP}|SITE|C|30"]
    assert c["denominator"] is None and c["proportion"] is None and c["pending"] == 0
    network = out[f"{PROP}|NETWORK|network|30"]
    assert (network["suppressed"], network["denominator"], network["numerator"]) == (False, 45, 7)


def test_rounding_obscures_counts_only() -> None:
    state = RollingState(CATALOGUE)
    clock_to(state, T0)
    for i in range(23):
        state.upsert(obs(T0 - 40 * DAY_US, outcome=1 if i < 7 else 0))
    s = state.snapshots(PROP, 5, rounding=10)[f"{PROP}|SITE|A|30"]
    assert (s["denominator"], s["numerator"], s["pending"]) == (30, 10, 0)
    assert s["proportion"] == 7 / 23 and (s["ci_low"], s["ci_high"]) == wilson_interval(7, 23)


# --- the property ---------------------------------------------------------------

def reference(steps: list[tuple[str, Any]]) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """From scratch: each indicator's clock, and the latest applied record of every live observation.
    The clock is the latest time (closed, else index) of the indicator's current observations, never
    below what it was at an eviction; a batch (the records between two checkpoints) moves it after
    all its records."""
    clocks: dict[str, int] = {}
    floors: dict[str, int] = {}  # the clock when an indicator's oldest days were last evicted
    latest: dict[str, dict[str, Any]] = {}
    evicted: set[str] = set()

    def first_kept_day(ind: str) -> int:  # 365 d of rolling windows + the follow-up + the revision horizon
        return (clocks.get(ind, 0) - 2 * 365 * DAY_US - follow_up_us(CATALOGUE.indicators[ind])) // DAY_US

    for action, r in [*steps, ("checkpoint", None)]:
        if action != "record":
            clocks = dict(floors)
            for o in latest.values():
                time = o["closed_time"] if o["closed_time"] is not None else o["index_time"]
                clocks[o["indicator"]] = max(clocks.get(o["indicator"], 0), time)
            for obs_id, o in latest.items():
                if obs_id not in evicted and o["index_time"] // DAY_US < first_kept_day(o["indicator"]):
                    evicted.add(obs_id)  # still in latest: an evicted observation stays in the cumulative cell
                    floors[o["indicator"]] = clocks[o["indicator"]]
            continue
        if r["index_time"] // DAY_US < first_kept_day(r["indicator"]):
            continue
        if r["exclusion"] == "superseded":
            latest.pop(r["observation_id"], None)
        else:
            latest[r["observation_id"]] = r
    return clocks, latest


def reference_snapshot(latest: dict[str, dict[str, Any]], as_of: int, indicator: str, scope: str, scope_id: str,
                       window: int | None) -> dict[str, Any]:
    ind = CATALOGUE.indicators[indicator]
    end = as_of - follow_up_us(ind)
    level = {"SITE": 0, "REGION": 1, "COUNTRY": 2}

    def in_scope(r: dict[str, Any]) -> bool:
        if scope == "NETWORK":
            return True
        return (r["site_id"], r["region"], r["country"])[level[scope]] == scope_id

    mine = [r for r in latest.values() if r["indicator"] == indicator and in_scope(r)]
    rows = [r for r in mine if r["index_time"] <= end and (window is None or r["index_time"] > end - window * DAY_US)]
    following = [r for r in mine if end < r["index_time"] <= as_of]
    final = [r for r in rows if r["status"] == "FINAL"]
    excluded = sum(r["status"] == "EXCLUDED" for r in rows)
    out: dict[str, Any] = {"denominator": len(final),
                           "pending": sum(r["status"] == "OPEN" for r in rows + following),
                           "provisional_numerator": None if ind.kind == "continuous" else sum(
                               r["status"] == "FINAL" and r["outcome"] == 1 for r in following),
                           "excluded": excluded, "excluded_by_reason": {"other": excluded} if excluded else {}}
    out["expected"] = (to_float(exact_total(r["expected"] for r in final))
                       if final and all(r["expected"] is not None for r in final) else None)
    observed = (exact_total(r["value"] for r in final) if ind.kind == "continuous"
                else exact_total(float(r["outcome"]) for r in final))
    out["observed_expected"] = (observed / exact_total(r["expected"] for r in final)
                                if out["expected"] is not None and out["expected"] > 0 else None)
    if ind.kind == "continuous":
        values = [r["value"] for r in final]
        out.update(mean=mean(values), sd=sample_sd(values), median=median(values))
    else:
        num = sum(r["outcome"] == 1 for r in final)
        ci = wilson_interval(num, len(final))
        out.update(numerator=num, proportion=num / len(final) if final else None,
                   ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None)
    return out


SITES = sorted(GEO)


@st.composite
def streams_of_observations(draw: st.DrawFn) -> tuple[bool, list[tuple[str, Any]]]:
    """(whether site A moves between regions, steps: records and checkpoints)."""
    n_obs = draw(st.integers(1, 25))
    moving = draw(st.booleans())
    identities = [(draw(st.sampled_from([PROP, CONT])), draw(st.sampled_from(SITES)),
                   draw(st.integers(0, 900)) * DAY_US + draw(st.sampled_from([0, 1, DAY_US // 2, DAY_US - 1])))
                  for _ in range(n_obs)]
    steps: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 60))):
        action = draw(st.sampled_from(["record"] * 8 + ["checkpoint", "snapshot"]))
        if action != "record":
            steps.append((action, None))
            continue
        i = draw(st.integers(0, n_obs - 1))
        indicator, site, index_time = identities[i]
        status = draw(st.sampled_from(["OPEN", "FINAL", "FINAL", "EXCLUDED", "SUPERSEDED"]))
        closed = index_time + draw(st.integers(0, 60)) * DAY_US if status != "OPEN" else None
        record = obs(
            index_time, status="EXCLUDED" if status == "SUPERSEDED" else status,
            outcome=draw(st.sampled_from([0, 1])), site=site, indicator=indicator, oid=f"id{i}", closed_time=closed,
            value=draw(st.sampled_from([0.5, 1.0, 2.25, 3.1, 7.0, 10.3])),
            expected=draw(st.sampled_from([None, 0.05, 0.1, 0.333, 0.7])),
            exclusion="superseded" if status == "SUPERSEDED" else ("missing" if status == "EXCLUDED" else None))
        if moving and site == "A":
            record["region"] = draw(st.sampled_from(["R1", "R9"]))
        steps.append(("record", record))
    return moving, steps


def _checkpoints(state: RollingState, steps: list[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
    for action, record in steps:
        if action == "record":
            state.upsert(record)
        else:
            state.evict()
            yield from (state.snapshot() if action == "snapshot" else state.take_delta() or [])
    state.evict()
    yield from state.take_delta() or []


@given(streams_of_observations())
@settings(max_examples=120, deadline=None)
def test_incremental_state_equals_recomputation(stream: tuple[bool, list[tuple[str, Any]]]) -> None:
    moving, steps = stream
    live = RollingState(CATALOGUE)
    log = list(_checkpoints(live, steps))
    clocks, latest = reference(steps)
    assert live.clocks == {k: v for k, v in clocks.items() if v > 0}  # a clock at 0 is an unset one
    for indicator in live.indicators:
        for cell, record in live.compute(indicator):
            if moving and cell.key[0] in ("REGION", "COUNTRY"):
                continue  # a site belongs to the region of its latest observation
            expected = reference_snapshot(latest, clocks.get(indicator, 0), indicator, cell.key[0], cell.key[1],
                                          record["window_days"])
            got = {k: record[k] for k in expected}
            assert got == expected, (indicator, cell.key, record["window_days"])
    # Replaying the changelog (from its last snapshot) rebuilds the same state.
    last_snapshot = max((i for i, r in enumerate(log) if r["snapshot"]), default=0)
    restored = RollingState(CATALOGUE)
    for record in _roundtrip(log[last_snapshot:]):
        restored.apply(record)
    restored.evict()
    assert _all_snapshots(restored, 5) == _all_snapshots(live, 5)
    assert {snapshot_key(i, "NETWORK", "network", w) for i in live.indicators for w in WINDOWS} <= set(
        _all_snapshots(live))


# --- publication by the stage (no broker: the in-memory driver) ----------------

def test_the_stage_publishes_changed_snapshots_at_most_once_per_coalesce_period(settings_factory: Any) -> None:
    from agents.aggregate import AggregateStage
    from streams.runtime import topics
    from streams.runtime.memory import InMemoryDriver

    settings = settings_factory(min_cell_count=1)
    driver = InMemoryDriver(settings, stages=["aggregate"])
    stage = driver.stages["aggregate"]
    assert isinstance(stage, AggregateStage) and stage.coalesce_seconds == 1.0
    producer = driver.producer
    published = driver.topics.logs

    def sent() -> set[tuple[str, bytes | None]]:
        return {(t, m.key()) for t, log in published.items() for part in log for m in part}

    state = stage.states.get(0)
    state.advance(T0)
    state.upsert(obs(T0 - 40 * DAY_US, site="A"))
    assert stage.tick(producer) == 16 + 8  # 4 scopes x 4 windows, COUNTRY and NETWORK also federated
    assert {t for t, _k in sent()} == {settings.topic(topics.INDICATORS), settings.topic(topics.NETWORK)}
    state.upsert(obs(T0 - 40 * DAY_US, site="A", outcome=1))
    driver.clock.advance(0.5)
    assert stage.tick(producer) == 0  # not due yet
    driver.clock.advance(0.5)
    assert stage.tick(producer) == 24  # every scope's counts changed
    # The clock alone moving (nothing enters or leaves a window) republishes nothing.
    state.advance(T0 + 1)
    driver.clock.advance(5)
    assert stage.tick(producer) == 0
    latest = stage.latest_snapshots(PROP)
    assert latest[f"{PROP}|SITE|A|30"]["numerator"] == 1 and len(latest) == 16
    stage.revoke([0])
    assert stage.latest_snapshots() == {}


# --- the prefix sums behind a window's tally -------------------------------------

@st.composite
def series_operations(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    """Adds, removals, evictions and window queries, interleaved (times in whole hours)."""
    ops = []
    for _ in range(draw(st.integers(1, 80))):
        op = draw(st.sampled_from(["add"] * 5 + ["remove", "evict", "window", "window"]))
        ops.append((op, draw(st.integers(0, 400 * 24)), draw(st.integers(0, 400 * 24))))
    return ops


@given(series_operations())
@settings(max_examples=200, deadline=None)
def test_a_series_window_equals_a_pass_over_its_members(ops: list[tuple[str, int, int]]) -> None:
    from operator import add

    from streams.indicators.rolling import EMPTY, Obs, Series

    hour = DAY_US // 24
    series, live, evicted_before = Series(), {}, 0
    for n, (op, a, b) in enumerate(ops):
        if op == "add" and a * hour // DAY_US >= evicted_before:
            status = ["FINAL", "OPEN", "EXCLUDED"][n % 3]
            o = Obs("i", "S", "R", "C", a * hour, status, n % 2, 1.5 * n, None, n % 4 == 0)
            series.add_to_day(o.index_time // DAY_US, f"o{n}", o)
            live[f"o{n}"] = o
        elif op == "remove" and live:
            oid = sorted(live)[a % len(live)]
            series.remove_from_day(live[oid].index_time // DAY_US, oid, live.pop(oid))
        elif op == "evict":
            first = a * hour // DAY_US
            series.evict_before(first)
            live = {k: o for k, o in live.items() if o.index_time // DAY_US >= first}
            evicted_before = max(evicted_before, first)
        elif op == "window":
            lo, hi = sorted((a * hour, b * hour))
            inside = [o for o in live.values() if lo < o.index_time <= hi]
            expected = list(EMPTY)
            for o in inside:
                expected = list(map(add, expected, o.contrib))
            tally, values = series.window(lo, hi, want_values=True)
            assert tally == expected
            assert sorted(values or []) == sorted(o.value for o in inside if o.value is not None)
            later = [o for o in live.values() if o.index_time > hi]
            cumulative, _ = series.window(None, hi, want_values=False)
            for o in later:
                cumulative = list(map(add, cumulative, o.contrib))
            assert cumulative == series.total
