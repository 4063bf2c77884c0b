"""Sequential monitoring per indicator x site: detection, false alarms at the configured ARL0,
the alert lifecycle, corrections, the funnel, and the changelog round trip."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from streams.monitoring.alerting import AlertBook
from streams.monitoring.charts import Z95, Z998
from streams.monitoring.feed_health import FeedHealth
from streams.monitoring.partition_monitor import FUNNEL_WINDOW_US, IndicatorMonitor, MonitorConfig, MonitorState
from streams.wire import formats as wire
from streams.wire.schemas import MONITOR_DELTA

T0 = 1_735_689_600_000_000  # 2025-01-01T00:00Z
HOUR = 3_600_000_000
SITES = ("A", "B", "C", "D", "E", "F")
RISKS = (0.03, 0.06, 0.1, 0.15, 0.25, 0.4)
PROP, CONT = "hf_mortality_30d", "hf_length_of_stay"


def feed(monitor: IndicatorMonitor, book: AlertBook, n: int, rng: random.Random, shift: tuple[str, int] | None = None,
         odds_ratio: float = 2.0, expected: bool = True) -> list[tuple[int, dict[str, Any]]]:
    """``n`` binary observations round-robin over the sites, hourly; ``shift`` = (site, from
    observation i): that site's odds x ``odds_ratio``. Returns (i, alert record) as published."""
    out = []
    for i in range(n):
        site = SITES[i % len(SITES)]
        p = rng.choice(RISKS)
        if shift and site == shift[0] and i >= shift[1]:
            odds = p / (1 - p) * odds_ratio
            p_true = odds / (1 + odds)
        else:
            p_true = p
        monitor.observe(f"o{i}", site, T0 + i * HOUR, float(rng.random() < p_true), p if expected else None)
        if i % 200 == 199:
            monitor.funnel()
        out.extend((i, r) for r in book.drain())
    return out


def test_a_doubling_of_the_odds_at_one_site_raises_its_cusum_alert_only() -> None:
    book = AlertBook(min_cell_count=5)
    monitor = IndicatorMonitor(PROP, False, MonitorConfig(arl0=5000.0), book)
    shift_at = 6000
    records = feed(monitor, book, 12_000, random.Random(3), shift=("C", shift_at))
    up = [(i, r) for i, r in records if r["method"] == "cusum_up" and r["status"] == "OPEN"]
    after = [(i, r) for i, r in up if i >= shift_at]
    assert after and after[0][1]["scope_id"] == "C", up
    i, alert = after[0]
    detected_after = (i - shift_at) // len(SITES)  # observations of site C since the shift
    assert detected_after < 400
    assert alert["alert_id"] == f"cusum_up:{PROP}:C:{T0 + i * HOUR}"
    assert alert["severity"] == "CRITICAL" and alert["observed_expected"] > 1.3
    # With ARL0 = 5000 per site, the 5 in-control sites (~10,000 charted observations) should
    # rarely alarm: at most 3 false cusum_up alerts (expected ~2) over the whole run.
    assert sum(1 for _i, r in up if r["scope_id"] != "C") <= 3


def test_false_alarms_match_the_configured_arl0() -> None:
    """A long in-control run through the same monitor classes the stage uses. After each
    signal the CUSUM restarts, so crossings form a renewal process with mean gap ARL0:
    the crossing count over N charted observations is about Poisson(N / ARL0). The check
    accepts 0.8-1.25 x N / ARL0 (and 4 Poisson SDs), which limits off by a factor a
    misconfigured ARL would give (2x ARL: half the crossings) cannot pass."""
    arl0 = 200.0
    book = AlertBook(min_cell_count=5)
    monitor = IndicatorMonitor(PROP, False, MonitorConfig(arl0=arl0, warmup=30), book)
    rng = random.Random(11)
    n = 150_000
    crossings = sum(1 for _i, r in feed(monitor, book, n, rng)
                    if r["method"] == "cusum_up" and r["status"] in ("OPEN", "UPDATED"))
    expected = (n - 30) / arl0
    sd = math.sqrt(expected)
    assert max(0.8 * expected, expected - 4 * sd) < crossings < min(1.25 * expected, expected + 4 * sd), (
        crossings, expected)


def test_lifecycle_opens_once_updates_on_new_crossings_and_resolves_by_the_reset_rule() -> None:
    book = AlertBook(min_cell_count=5)
    cfg = MonitorConfig(arl0=100.0, warmup=10, resolve_after=20)
    monitor = IndicatorMonitor(PROP, False, cfg, book)
    i = 0

    def obs(site: str, y: int, p: float = 0.1) -> list[dict[str, Any]]:
        nonlocal i
        i += 1
        monitor.observe(f"x{i}", site, T0 + i * HOUR, float(y), p)
        return book.drain()

    for _ in range(10):  # warm-up: charts start after 10 observations network-wide
        assert obs("B", 0) == []
    chart = monitor.chart("A")
    out: list[dict[str, Any]] = []
    while not out:
        out = [r for r in obs("A", 1) if r["method"] == "cusum_up"]
    opened = out[0]
    assert opened["status"] == "OPEN" and opened["signals"] == 1 and chart.up == 0.0  # restarted
    assert opened["statistic"] >= opened["limit"] == chart.h_up
    assert opened["numerator"] is None and opened["observed_expected"] is None  # 3 deaths: a small cell
    again: list[dict[str, Any]] = []
    while not again:
        again = [r for r in obs("A", 1) if r["method"] == "cusum_up"]
    assert again[0]["status"] == "UPDATED" and again[0]["alert_id"] == opened["alert_id"]
    assert again[0]["signals"] == 2 and again[0]["numerator"] >= 5
    quiet = [obs("A", 0) for _ in range(cfg.resolve_after - 1)]
    assert all(r["status"] != "RESOLVED" for batch in quiet for r in batch)
    resolved = [r for r in obs("A", 0) if r["method"] == "cusum_up"]
    assert resolved[0]["status"] == "RESOLVED" and resolved[0]["alert_id"] == opened["alert_id"]
    assert not book.is_open((PROP, "A", "cusum_up"))
    # A redelivered observation changes nothing and publishes nothing.
    assert not monitor.observe(f"x{i}", "A", T0 + i * HOUR, 0.0, 0.1)
    assert book.drain() == []


def test_null_expected_falls_back_to_the_network_rate() -> None:
    book = AlertBook(min_cell_count=5)
    monitor = IndicatorMonitor(PROP, False, MonitorConfig(arl0=500.0, warmup=30), book)
    feed(monitor, book, 3000, random.Random(5), expected=False)
    net = monitor.network.t
    rate = net[1] / net[0]
    mix = monitor.charts["A"].mix.support()
    # the risks used are the running network rate (noisy only in the first observations)
    assert sum(r * w for r, w in mix) == pytest.approx(rate, abs=0.01)
    assert sum(w for r, w in mix if abs(r - rate) < 0.02) > 0.9
    assert monitor.charts["A"].h_up > 0 and monitor.charts["A"].t[3] == 0  # no expected risks counted


def test_funnel_z_scores_limits_and_overdispersion() -> None:
    book = AlertBook(min_cell_count=5)
    monitor = IndicatorMonitor(PROP, False, MonitorConfig(warmup=10), book)
    i = 0
    for site, n, deaths in (("A", 400, 40), ("B", 400, 40), ("C", 400, 40), ("D", 400, 80)):
        for k in range(n):
            i += 1
            monitor.observe(f"f{i}", site, T0 + i * HOUR, float(k < deaths), 0.1)
    monitor.funnel()
    z = {s: c.funnel_z for s, c in monitor.charts.items()}
    assert z["A"] == pytest.approx(0.0) and z["D"] == pytest.approx(40 / math.sqrt(400 * 0.09))
    alerts = [r for r in book.drain() if r["method"] == "funnel"]
    assert [a["scope_id"] for a in alerts] == ["D"] and alerts[0]["limit"] == Z998
    assert alerts[0]["numerator"] == 80 and alerts[0]["denominator"] == 400
    assert alerts[0]["observed_expected"] == pytest.approx(2.0)
    phi_monitor = IndicatorMonitor(PROP, False, MonitorConfig(warmup=10, overdispersion="phi"), AlertBook(5))
    phi_monitor.charts, phi_monitor.network = monitor.charts, monitor.network
    phi_monitor.funnel()
    phi = (z["D"] ** 2) / 4
    assert monitor.charts["D"].funnel_z == pytest.approx(z["D"] / math.sqrt(phi))
    # resolution needs the site back inside the 95 % limit (hysteresis)
    for k in range(4000):
        i += 1
        monitor.observe(f"f{i}", "D", T0 + i * HOUR, float(k % 11 == 0), 0.1)
    monitor.funnel()
    assert abs(monitor.charts["D"].funnel_z) < Z95
    assert [r["status"] for r in book.drain() if r["method"] == "funnel"][-1] == "RESOLVED"


def test_a_revision_is_a_correction_at_the_current_point_and_old_observations_leave() -> None:
    book = AlertBook(min_cell_count=5)
    config = MonitorConfig(warmup=1)
    monitor = IndicatorMonitor(PROP, False, config, book)
    p = 0.2

    def weight(y: float, odds: float) -> float:  # the Bernoulli CUSUM's log-likelihood-ratio term
        return y * math.log(odds) - math.log(1 - p + odds * p)

    monitor.observe("a", "A", T0, 0.0, p)
    monitor.observe("b", "A", T0 + HOUR, 1.0, p)
    chart = monitor.charts["A"]
    up, down, vlad = chart.up, chart.down, chart.vlad
    assert up > 0
    assert monitor.retract("b") and chart.t[0] == 1  # b's term leaves the CUSUM, VLAD and the totals
    assert chart.up == pytest.approx(max(0.0, up - weight(1, config.odds_up)))
    assert chart.vlad == pytest.approx(vlad - (p - 1.0))
    up, down, vlad = chart.up, chart.down, chart.vlad
    assert monitor.observe("a", "A", T0, 1.0, p)  # a late death: FINAL 0 revised to 1
    assert chart.up == pytest.approx(max(0.0, up + weight(1, config.odds_up) - weight(0, config.odds_up)))
    assert chart.down == pytest.approx(max(0.0, down + weight(1, config.odds_down) - weight(0, config.odds_down)))
    assert chart.vlad == pytest.approx(vlad - 1.0)
    assert chart.t[1] == 1 and monitor.network.t[1] == 1
    monitor.observe("late", "B", T0 + FUNNEL_WINDOW_US + 2 * HOUR, 0.0, p)
    assert monitor.evict() == 1 and "a" not in monitor.seen and chart.t[0] == 0
    assert not monitor.observe("ancient", "A", T0 - HOUR, 1.0, p)  # older than the window


def test_late_deaths_revising_a_sites_survivors_raise_its_cusum_alert() -> None:
    book = AlertBook(min_cell_count=5)
    monitor = IndicatorMonitor(PROP, False, MonitorConfig(arl0=1000.0, warmup=1), book)
    for i in range(300):
        monitor.observe(f"o{i}", SITES[i % 2], T0 + i * HOUR, 0.0, 0.1)
    assert not [r for r in book.drain() if r["method"] == "cusum_up"]
    for i in range(0, 60, 2):  # a civil registry's batch: 30 of site A's survivors had died
        monitor.observe(f"o{i}", "A", T0 + i * HOUR, 1.0, 0.1)
    opened = [r for r in book.drain() if r["method"] == "cusum_up" and r["status"] == "OPEN"]
    assert [r["scope_id"] for r in opened] == ["A"]


def test_ewma_watches_continuous_indicators() -> None:
    book = AlertBook(min_cell_count=5)
    monitor = IndicatorMonitor(CONT, True, MonitorConfig(arl0=500.0, warmup=30), book)
    rng = random.Random(2)
    records = []
    for i in range(6000):
        site = SITES[i % 6]
        shift = 3.0 if site == "E" and i >= 3000 else 0.0
        monitor.observe(f"c{i}", site, T0 + i * HOUR, rng.gauss(8.0 + shift, 3.0), None)
        records.extend((i, r) for r in book.drain())
    opened = [(i, r) for i, r in records if r["method"] == "ewma" and r["status"] == "OPEN"]
    at_e = [(i, r) for i, r in opened if r["scope_id"] == "E" and i >= 3000]
    assert at_e and at_e[0][1]["statistic"] > 0
    assert at_e[0][0] - 3000 < 6 * 60  # within 60 of E's observations after a 1 SD shift
    # ARL0 500 over ~5,800 in-control charted observations: ~12 false alarms expected, few alerts
    # since an open alert stays open until the chart has calmed down
    assert len([1 for _i, r in opened if r["scope_id"] != "E"]) < 20


def state_with_traffic() -> MonitorState:
    config = MonitorConfig(arl0=200.0, warmup=10)
    state = MonitorState({PROP: (False, 30 * 24 * HOUR), CONT: (True, 0)}, config, FeedHealth(900.0, 0.05))
    rng = random.Random(9)
    for i in range(3000):
        site = SITES[i % 6]
        p = rng.choice(RISKS)
        state.monitor(PROP).observe(f"p{i}", site, T0 + i * HOUR, float(rng.random() < (0.5 if site == "A" else p)), p)
        state.monitor(CONT).observe(f"c{i}", site, T0 + i * HOUR, rng.gauss(8, 3), None)
        if i % 100 == 0:
            state.end_batch()
    state.feed.activity({"site_id": "A", "bucket_seconds": 3600, "events": {str(T0): 5, str(T0 + 2 * HOUR): 3},
                         "dead_letters": 1, "last_seen": T0})
    state.end_batch()
    state.alerts.drain()
    return state


def test_changelog_round_trip_restores_every_reading_and_alert() -> None:
    state = state_with_traffic()
    encoder, decoder = wire.Encoder(MONITOR_DELTA), wire.Decoder(MONITOR_DELTA)
    snapshot = [decoder.decode(encoder.encode(r))[0] for r in state.snapshot()]
    restored = MonitorState(state.kinds, state.config, FeedHealth(900.0, 0.05))
    for record in snapshot:
        restored.apply(record)
    restored.restored()
    now = T0 + 10_000 * HOUR
    assert restored.readings(now) and sorted(restored.readings(now)) == sorted(state.readings(now))
    assert list(restored.alerts) == list(state.alerts) and any(a["scope_id"] == "A" for a in state.alerts)
    # deltas after the snapshot replay too; both continue identically
    for s in (state, restored):
        s.monitor(PROP).observe("next", "B", T0 + 5000 * HOUR, 1.0, 0.1)
        s.end_batch()
    delta = [decoder.decode(encoder.encode(r))[0] for r in state.take_delta()]
    again = MonitorState(state.kinds, state.config, FeedHealth(900.0, 0.05))
    for record in [*snapshot, *delta]:
        again.apply(record)
    again.restored()
    assert sorted(again.readings(now)) == sorted(state.readings(now)) == sorted(restored.readings(now))
    assert len(again) == len(state)


def test_alert_evidence_is_disclosure_controlled_and_an_alert_opened_in_a_batch_publishes_as_open() -> None:
    from streams.monitoring.alerting import Evidence

    book = AlertBook(min_cell_count=5, rounding=10)
    key = (PROP, "A", "cusum_up")
    book.signal(key, 4.0, 3.5, T0, Evidence(12, 14, 6.0, T0 - HOUR, T0))  # 2 survivors: small
    book.signal(key, 4.1, 3.5, T0 + HOUR, Evidence(8, 40, 4.0, T0, T0 + HOUR))
    (record,) = book.drain()
    assert record["status"] == "OPEN" and record["signals"] == 2  # opened in this batch
    assert (record["numerator"], record["denominator"], record["expected"]) == (20, 60, 10.0)  # rounded up to 10s
    assert record["observed_expected"] == 2.0 and record["rank"] == 200 + 10.0
    assert record["window_start"] == T0 - HOUR and record["window_end"] == T0 + HOUR
    other = (PROP, "B", "cusum_up")
    book.signal(other, 4.0, 3.5, T0, Evidence(12, 14, 6.0, T0, T0))
    (hidden,) = book.drain()
    assert (hidden["numerator"], hidden["denominator"], hidden["expected"], hidden["observed_expected"]) == (
        None, None, None, None)
    assert hidden["rank"] == 200 + round(4.0 / 3.5, 2)


def test_a_cusum_towards_worse_outcomes_is_critical_and_towards_better_informational() -> None:
    """Mortality: more deaths than expected is the critical side. Remission: fewer remissions."""
    def first_alert(better: str, y: int) -> dict[str, Any]:
        book = AlertBook(min_cell_count=5)
        monitor = IndicatorMonitor(PROP, False, MonitorConfig(arl0=100.0, warmup=10), book, better=better)
        for i in range(10):  # warm-up at the expected rate
            monitor.observe(f"w{i}", "B", T0 + i * HOUR, float(i == 0), 0.1)
        for i in range(200):
            monitor.observe(f"x{i}", "A", T0 + (20 + i) * HOUR, float(y), 0.5 if y == 0 else 0.1)
            opened = [r for r in book.drain() if r["method"].startswith("cusum") and r["status"] == "OPEN"]
            if opened:
                return opened[0]
        raise AssertionError("no CUSUM signal")

    more = first_alert("lower", 1)    # outcomes every time at an expected 10 %: up, worse
    fewer = first_alert("lower", 0)   # none at an expected 50 %: down, better
    assert (more["method"], more["severity"]) == ("cusum_up", "CRITICAL")
    assert (fewer["method"], fewer["severity"]) == ("cusum_down", "INFO")
    good_more = first_alert("higher", 1)
    good_fewer = first_alert("higher", 0)
    assert (good_more["method"], good_more["severity"]) == ("cusum_up", "INFO")
    assert (good_fewer["method"], good_fewer["severity"]) == ("cusum_down", "CRITICAL")


def test_the_catalogue_says_which_way_each_indicator_improves() -> None:
    from streams.catalogue.definitions import load_catalogue

    higher = {i.id for i in load_catalogue().indicators.values() if i.better == "higher"}
    assert higher == {"aml_complete_remission", "pca_epic26_incontinence_12m"}
