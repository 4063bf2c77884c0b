"""Indicator values and monitor statistics on /metrics, computed at scrape time.

The stages keep their latest results in memory (:meth:`AggregateStage.latest_snapshots`,
``MonitorStage.readings()`` and ``open_alerts()``); this collector turns them into gauges
only when Prometheus scrapes, so the per-event path pays nothing. Every label value comes
from a finite, configured set: catalogue indicator ids, configured site ids plus
``network``, windows ``30d|90d|365d|all``, the monitor's method names and alert
severities. A record with any other value (a REGION or COUNTRY scope, a site not in the
site list) is not exported. A suppressed snapshot exports none of its series: a
Prometheus sample is a published aggregate (catalogue privacy rules).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.catalogue.definitions import Catalogue
from streams.indicators.rolling import WINDOWS
from streams.indicators.statistics import Z95
from streams.monitoring.readings import MonitorReading
from streams.vocabulary import scopes

WINDOW_LABELS: dict[int | None, str] = {w: "all" if w is None else f"{w}d" for w in WINDOWS}
OUTCOME_METHODS = frozenset({"cusum_up", "cusum_down", "vlad", "ewma", "funnel"})
FEED_METHODS = frozenset({"ears_c1", "ears_c2", "ears_c3", "feed_silence", "dlq_rate"})
SEVERITIES = frozenset({"INFO", "WARNING", "CRITICAL"})
INDICATOR_LABELS = ["indicator", "site", "window"]
MONITOR_LABELS = ["indicator", "site", "method"]


@runtime_checkable
class SnapshotSource(Protocol):
    """The aggregate stage, as the collector reads it."""

    def latest_snapshots(self, indicator: str | None = None) -> dict[str, dict[str, Any]]: ...


@runtime_checkable
class MonitorSource(Protocol):
    """The monitor stage, as the collector reads it."""

    def readings(self) -> Sequence[MonitorReading]: ...

    def open_alerts(self) -> list[dict[str, Any]]: ...


class OutcomeCollector(Collector):
    """``rwe_indicator_*``, ``rwe_monitor_*`` and ``rwe_alerts_open`` from in-process stages."""

    def __init__(self, catalogue: Catalogue, sites: Iterable[str], prefix: str = "rwe") -> None:
        self.catalogue = catalogue
        self.indicators = frozenset(catalogue.indicators)
        self.configured_sites = frozenset(sites)
        self.sites = self.configured_sites | {scopes.NETWORK_ID}
        self.prefix = prefix
        self._snapshot_sources: list[SnapshotSource] = []
        self._monitor_sources: list[MonitorSource] = []
        self._lock = threading.Lock()

    def attach(self, stage: object) -> None:
        """Read ``stage`` on every scrape if it is a snapshot or monitor source."""
        with self._lock:
            if isinstance(stage, SnapshotSource):
                self._snapshot_sources.append(stage)
            if isinstance(stage, MonitorSource):
                self._monitor_sources.append(stage)

    def describe(self) -> list[GaugeMetricFamily]:
        """The families this collector can export (names only; no stage is read)."""
        return [self._info(), *self._indicator_families().values(), *self._monitor_families().values(),
                self._alerts_family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            snapshot_sources, monitor_sources = list(self._snapshot_sources), list(self._monitor_sources)
        yield self._info()
        indicator = self._indicator_families()
        for source in snapshot_sources:
            for snapshot in source.latest_snapshots().values():
                self._add_snapshot(indicator, snapshot)
        yield from indicator.values()
        if not monitor_sources:
            return
        monitor = self._monitor_families()
        alerts = Counter[tuple[str, str, str, str]]()
        for monitor_source in monitor_sources:
            for reading in monitor_source.readings():
                self._add_reading(monitor, reading)
            alerts.update(key for a in monitor_source.open_alerts() if (key := self._alert_labels(a)) is not None)
        yield from monitor.values()
        open_alerts = self._alerts_family()
        for labels, n in sorted(alerts.items()):
            open_alerts.add_metric(labels, n)
        yield open_alerts

    # --- families ------------------------------------------------------------
    def _info(self) -> GaugeMetricFamily:
        info = GaugeMetricFamily(f"{self.prefix}_indicator_info", "Catalogue indicators (always 1): disease "
                                 "area and kind of each, for grouping dashboards by area.",
                                 labels=["indicator", "area", "kind"])
        for ind in self.catalogue.indicators.values():
            info.add_metric([ind.id, ind.area, ind.kind], 1)
        return info

    def _indicator_families(self) -> dict[str, GaugeMetricFamily]:
        p = self.prefix
        docs = {
            "value": "Indicator value: proportion (0-1) or mean (the indicator's unit).",
            "lower": "Lower 95 % bound: Wilson for proportions, mean - 1.96 SD/sqrt(n) for means.",
            "upper": "Upper 95 % bound: Wilson for proportions, mean + 1.96 SD/sqrt(n) for means.",
            "denominator": "FINAL observations in the window (rounded when RWE_CELL_ROUNDING is on).",
            "observed_expected_ratio": "Observed / expected (risk-adjusted); absent without a risk model.",
        }
        return {k: GaugeMetricFamily(f"{p}_indicator_{k}", f"{doc} Small cells are not exported.",
                                     labels=INDICATOR_LABELS) for k, doc in docs.items()}

    def _monitor_families(self) -> dict[str, GaugeMetricFamily]:
        p = self.prefix
        return {
            "statistic": GaugeMetricFamily(f"{p}_monitor_statistic", "Current monitor statistic: CUSUM S_t, VLAD, "
                                           "EWMA Z_t, funnel z-score, EARS C, feed silence (s), dead-letter "
                                           "rate.", labels=MONITOR_LABELS),
            "limit": GaugeMetricFamily(f"{p}_monitor_limit", "Control limit the statistic signals at.",
                                       labels=MONITOR_LABELS),
            "signalled": GaugeMetricFamily(f"{p}_monitor_signalled", "1 while the monitor is beyond its limit.",
                                           labels=MONITOR_LABELS),
        }

    def _alerts_family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{self.prefix}_alerts_open", "Open outcome and feed alerts.",
                                 labels=["indicator", "site", "method", "severity"])

    # --- samples -------------------------------------------------------------
    def _add_snapshot(self, families: dict[str, GaugeMetricFamily], s: dict[str, Any]) -> None:
        if s["suppressed"] or s["indicator"] not in self.indicators:
            return
        site = self._site(s["scope"], s["scope_id"])
        window = WINDOW_LABELS.get(s["window_days"], "")
        if site is None or not window:
            return
        labels = [s["indicator"], site, window]
        den = s["denominator"]
        if s["proportion"] is not None:
            value, lower, upper = s["proportion"], s["ci_low"], s["ci_high"]
        else:
            value, lower, upper = s["mean"], None, None
            if value is not None and s["sd"] is not None and den:
                half = Z95 * s["sd"] / math.sqrt(den)
                lower, upper = value - half, value + half
        for name, v in (("value", value), ("lower", lower), ("upper", upper), ("denominator", den),
                        ("observed_expected_ratio", s["observed_expected"])):
            if v is not None:
                families[name].add_metric(labels, v)

    def _add_reading(self, families: dict[str, GaugeMetricFamily], r: MonitorReading) -> None:
        if not self._known_monitor(r.indicator, r.site, r.method):
            return
        labels = [r.indicator, r.site, r.method]
        families["statistic"].add_metric(labels, r.statistic)
        if r.limit is not None:
            families["limit"].add_metric(labels, r.limit)
        families["signalled"].add_metric(labels, 1.0 if r.signalled else 0.0)

    def _alert_labels(self, alert: dict[str, Any]) -> tuple[str, str, str, str] | None:
        site = self._site(alert["scope"], alert["scope_id"])
        if site is None or alert["severity"] not in SEVERITIES:
            return None
        if not self._known_monitor(alert["indicator"], site, alert["method"]):
            return None
        return alert["indicator"], site, alert["method"], alert["severity"]

    def _known_monitor(self, indicator: str, site: str, method: str) -> bool:
        if site not in self.sites:
            return False
        if method in FEED_METHODS:
            return indicator == "" or indicator in self.indicators
        return method in OUTCOME_METHODS and indicator in self.indicators

    def _site(self, scope: str, scope_id: str) -> str | None:
        if scope == scopes.NETWORK:
            return scopes.NETWORK_ID
        if scope == scopes.SITE and scope_id in self.configured_sites:
            return str(scope_id)
        return None
