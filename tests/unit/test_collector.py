"""The scrape-time collector: which snapshot and monitor values become samples, with
which labels, and what is never exported (suppressed cells, unconfigured label values)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.catalogue.definitions import load_catalogue
from streams.monitoring.readings import MonitorReading
from streams.runtime.collector import OutcomeCollector

CATALOGUE = load_catalogue()
SITES = ("S1", "S2")


def snapshot(indicator: str = "hf_mortality_30d", scope: str = "SITE", scope_id: str = "S1",
             window_days: int | None = 30, **values: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"indicator": indicator, "scope": scope, "scope_id": scope_id, "window_days": window_days,
                         "suppressed": False, "denominator": 40, "numerator": 8, "proportion": 0.2,
                         "ci_low": 0.1, "ci_high": 0.35, "mean": None, "sd": None, "median": None,
                         "expected": None, "observed_expected": None}
    s.update(values)
    return s


class Snapshots:
    def __init__(self, *snapshots: dict[str, Any]) -> None:
        self.snapshots = {f"{s['indicator']}|{s['scope']}|{s['scope_id']}|{s['window_days']}": s for s in snapshots}

    def latest_snapshots(self, indicator: str | None = None) -> dict[str, dict[str, Any]]:
        return self.snapshots


class Monitor:
    def __init__(self, readings: list[MonitorReading], alerts: list[dict[str, Any]]) -> None:
        self._readings, self._alerts = readings, alerts

    def readings(self) -> list[MonitorReading]:
        return self._readings

    def open_alerts(self) -> list[dict[str, Any]]:
        return self._alerts


def alert(indicator: str, scope_id: str, method: str, severity: str = "WARNING",
          scope: str = "SITE") -> dict[str, Any]:
    return {"alert_id": "a", "status": "OPEN", "indicator": indicator, "scope": scope, "scope_id": scope_id,
            "method": method, "severity": severity}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def collector_on(registry: CollectorRegistry, *stages: object) -> OutcomeCollector:
    collector = OutcomeCollector(CATALOGUE, SITES)
    for stage in stages:
        collector.attach(stage)
    registry.register(collector)
    return collector


def test_a_proportion_exports_value_interval_and_denominator(registry: CollectorRegistry) -> None:
    collector_on(registry, Snapshots(snapshot(observed_expected=1.4)))
    labels = {"indicator": "hf_mortality_30d", "site": "S1", "window": "30d"}
    assert registry.get_sample_value("rwe_indicator_value", labels) == 0.2
    assert registry.get_sample_value("rwe_indicator_lower", labels) == 0.1
    assert registry.get_sample_value("rwe_indicator_upper", labels) == 0.35
    assert registry.get_sample_value("rwe_indicator_denominator", labels) == 40
    assert registry.get_sample_value("rwe_indicator_observed_expected_ratio", labels) == 1.4


def test_a_mean_gets_a_normal_interval_and_a_missing_ratio_is_absent(registry: CollectorRegistry) -> None:
    collector_on(registry, Snapshots(snapshot("hf_length_of_stay", "NETWORK", "network", None, proportion=None,
                                              ci_low=None, ci_high=None, mean=8.0, sd=5.0, denominator=100)))
    labels = {"indicator": "hf_length_of_stay", "site": "network", "window": "all"}
    assert registry.get_sample_value("rwe_indicator_value", labels) == 8.0
    assert registry.get_sample_value("rwe_indicator_lower", labels) == pytest.approx(8.0 - 1.959964 * 0.5)
    assert registry.get_sample_value("rwe_indicator_upper", labels) == pytest.approx(8.0 + 1.959964 * 0.5)
    assert registry.get_sample_value("rwe_indicator_observed_expected_ratio", labels) is None


def test_suppressed_cells_and_unconfigured_labels_export_nothing(registry: CollectorRegistry) -> None:
    collector_on(registry, Snapshots(
        snapshot(scope_id="S2", suppressed=True, denominator=None, proportion=None, ci_low=None, ci_high=None),
        snapshot(scope_id="XX-UNKNOWN"),          # not a configured site
        snapshot(scope="REGION", scope_id="R1"),  # regions and countries are not site labels
        snapshot(window_days=7),                  # not a catalogue window
        snapshot(indicator="not_in_catalogue"),
    ))
    text = generate_latest(registry).decode()
    assert "rwe_indicator_value{" not in text
    assert "rwe_indicator_denominator{" not in text
    assert 'rwe_indicator_info{area="cardiovascular",indicator="hf_mortality_30d",kind="proportion"} 1.0' in text


def test_monitor_readings_and_open_alerts(registry: CollectorRegistry) -> None:
    readings = [MonitorReading("hf_mortality_30d", "S1", "cusum_up", 3.2, 4.5, False),
                MonitorReading("hf_mortality_30d", "network", "funnel", -0.4, None, False),
                MonitorReading("", "S2", "feed_silence", 7200.0, 3600.0, True),
                MonitorReading("hf_mortality_30d", "XX", "cusum_up", 9.0, 4.5, True),       # unknown site
                MonitorReading("hf_mortality_30d", "S1", "made_up", 9.0, 4.5, True),        # unknown method
                MonitorReading("", "S1", "cusum_up", 9.0, 4.5, True)]  # outcome method, no indicator
    alerts = [alert("hf_mortality_30d", "S1", "cusum_up"), alert("hf_mortality_30d", "S1", "cusum_up"),
              alert("", "S2", "feed_silence", "CRITICAL"), alert("hf_mortality_30d", "S1", "cusum_up", "LOUD")]
    collector_on(registry, Monitor(readings, alerts))
    cusum = {"indicator": "hf_mortality_30d", "site": "S1", "method": "cusum_up"}
    assert registry.get_sample_value("rwe_monitor_statistic", cusum) == 3.2
    assert registry.get_sample_value("rwe_monitor_limit", cusum) == 4.5
    assert registry.get_sample_value("rwe_monitor_signalled", cusum) == 0
    funnel = {"indicator": "hf_mortality_30d", "site": "network", "method": "funnel"}
    assert registry.get_sample_value("rwe_monitor_statistic", funnel) == -0.4
    assert registry.get_sample_value("rwe_monitor_limit", funnel) is None
    silence = {"indicator": "", "site": "S2", "method": "feed_silence"}
    assert registry.get_sample_value("rwe_monitor_signalled", silence) == 1
    assert registry.get_sample_value("rwe_alerts_open", {**cusum, "severity": "WARNING"}) == 2
    assert registry.get_sample_value("rwe_alerts_open", {**silence, "severity": "CRITICAL"}) == 1
    text = generate_latest(registry).decode()
    assert 'site="XX"' not in text and "made_up" not in text and "LOUD" not in text
    assert text.count("rwe_monitor_statistic{") == 3


def test_describe_names_every_family_without_reading_stages() -> None:
    class Exploding:
        def latest_snapshots(self, indicator: str | None = None) -> dict[str, dict[str, Any]]:
            raise AssertionError("read at registration")

    collector = OutcomeCollector(CATALOGUE, SITES)
    collector.attach(Exploding())
    names = {f.name for f in collector.describe()}
    assert {"rwe_indicator_value", "rwe_indicator_lower", "rwe_indicator_upper", "rwe_indicator_denominator",
            "rwe_indicator_observed_expected_ratio", "rwe_monitor_statistic", "rwe_monitor_limit",
            "rwe_monitor_signalled", "rwe_alerts_open"} <= names
    CollectorRegistry().register(collector)  # registration calls describe(), never collect()
