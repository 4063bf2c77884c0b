# mypyc: compiled (the per-event path: setup.py)
"""The alert lifecycle: one Alert record per signal, from OPEN to RESOLVED. Pure logic.

* **Open.** A monitor crossing its limit with no alert open for the same
  (indicator, site, method) opens one. Its ``alert_id`` is
  ``method:indicator:site:first_seen`` with ``first_seen`` the event time (UTC us) of
  the crossing: the same input replayed gives the same id, so a redelivered batch
  rewrites the same key of the compacted alerts topic instead of raising a second
  alert.
* **Update.** While open, a new crossing (a CUSUM restarted after its signal that
  crosses again) or, for monitors that stay over their limit (EWMA, funnel), every
  :data:`UPDATE_EVERY` observations over it, update the alert's statistic and
  evidence. Records go out once per batch per alert, however many updates it had.
* **Resolve.** By each monitor's reset rule (:mod:`streams.monitoring.partition_monitor`,
  :mod:`streams.monitoring.feed_health`); a resolved alert leaves the open set, and the next
  crossing opens a new alert with a new id.
* **Evidence.** Observed and expected events and observations over the alert's
  evidence window; numerator and denominator are withheld (with O/E) when either,
  or the patients without the outcome, is a small cell (:mod:`streams.indicators.disclosure`),
  and rounded when rounding is configured.
* **Rank** (triage, higher first): 100 x severity level + min(99, |O - E|) excess
  events, or + min(99, statistic / limit) when there are no counts to show.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streams.indicators import disclosure
from streams.vocabulary.scopes import SITE

SEVERITY_LEVEL = {"INFO": 0, "WARNING": 1, "CRITICAL": 2}
SEVERITY = {"cusum_up": "CRITICAL", "cusum_down": "INFO", "ewma": "WARNING", "funnel": "WARNING",
            "ears_c1": "INFO", "ears_c2": "WARNING", "ears_c3": "WARNING", "feed_silence": "CRITICAL",
            "dlq_rate": "WARNING"}
UPDATE_EVERY = 25  # observations over the limit between updates of an alert that stays over
AlertKey = tuple[str, str, str]  # indicator, site, method


class Evidence:
    """Counts behind an alert (unsuppressed; the record carries the disclosed ones)."""

    __slots__ = ("denominator", "end", "expected", "numerator", "start")

    def __init__(self, numerator: float | None = None, denominator: int | None = None,
                 expected: float | None = None, start: int | None = None, end: int | None = None) -> None:
        self.numerator, self.denominator, self.expected, self.start, self.end = (
            numerator, denominator, expected, start, end)


class AlertBook:
    """Open alerts of one partition, and the records to publish after the batch."""

    def __init__(self, min_cell_count: int, rounding: int = 0) -> None:
        self.min_cell_count = min_cell_count
        self.rounding = rounding
        self.open: dict[AlertKey, dict[str, Any]] = {}
        self.outbox: dict[str, dict[str, Any]] = {}     # alert_id -> record, this batch
        self.changed: dict[str, dict[str, Any]] = {}    # alert_id -> record, since the last changelog delta
        self._raw: dict[AlertKey, Evidence] = {}        # accumulated evidence of open alerts

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self.open.values()))

    def is_open(self, key: AlertKey) -> bool:
        return key in self.open

    def signal(self, key: AlertKey, statistic: float, limit: float, at: int, evidence: Evidence,
               accumulate: bool = True, severity: str | None = None) -> None:
        """A crossing: open an alert, or update the open one (``accumulate``: add the new
        evidence to what the alert holds; else replace it). ``severity`` overrides the
        method's (a CUSUM's depends on which way the indicator improves)."""
        indicator, site, method = key
        alert = self.open.get(key)
        if alert is None:
            alert = {"alert_id": f"{method}:{indicator}:{site}:{at}", "status": "OPEN", "indicator": indicator,
                     "scope": SITE, "scope_id": site, "method": method, "severity": severity or SEVERITY[method],
                     "signals": 1, "first_seen": at}
            self.open[key] = alert
            self._raw[key] = evidence
        else:
            alert["status"] = "UPDATED"
            alert["signals"] += 1
            held = self._raw[key]
            if accumulate and held.denominator is not None and evidence.denominator is not None:
                held.numerator = (held.numerator or 0) + (evidence.numerator or 0)
                held.denominator += evidence.denominator
                held.expected = None if held.expected is None or evidence.expected is None else (
                    held.expected + evidence.expected)
                held.end = evidence.end
            else:
                self._raw[key] = evidence
        alert.update(statistic=float(statistic), limit=float(limit), last_seen=at)
        self._disclose(key, alert)
        self._emit(alert)

    def resolve(self, key: AlertKey, at: int) -> None:
        alert = self.open.pop(key, None)
        if alert is None:
            return
        self._raw.pop(key, None)
        alert.update(status="RESOLVED", last_seen=at)
        self._emit(alert)

    def restore(self, alert: dict[str, Any], evidence: dict[str, float]) -> None:
        """Replay one alert and its undisclosed evidence from the changelog (RESOLVED: it
        leaves the open set)."""
        key = (alert["indicator"], alert["scope_id"], alert["method"])
        if alert["status"] == "RESOLVED":
            self.open.pop(key, None)
            self._raw.pop(key, None)
            return
        self.open[key] = alert
        den = evidence.get("denominator")
        self._raw[key] = Evidence(evidence.get("numerator"), None if den is None else int(den),
                                  evidence.get("expected"), alert["window_start"], alert["window_end"])

    def evidence(self, alert_id: str) -> dict[str, float]:
        """The undisclosed evidence of an alert, for the changelog (keys only when known)."""
        for key, alert in self.open.items():
            if alert["alert_id"] == alert_id:
                ev = self._raw[key]
                return {k: float(v) for k, v in (("numerator", ev.numerator), ("denominator", ev.denominator),
                                                 ("expected", ev.expected)) if v is not None}
        return {}

    def evidence_size(self, key: AlertKey) -> int | None:
        """Observations behind an open alert's latest evidence."""
        ev = self._raw.get(key)
        return None if ev is None else ev.denominator

    def drain(self) -> list[dict[str, Any]]:
        """The records to publish for this batch, one per alert that changed."""
        out = list(self.outbox.values())
        self.outbox = {}
        return out

    def take_changed(self) -> list[dict[str, Any]]:
        out = list(self.changed.values())
        self.changed = {}
        return out

    def _emit(self, alert: dict[str, Any]) -> None:
        record = dict(alert)
        earlier = self.outbox.get(alert["alert_id"])
        if earlier is not None and earlier["status"] == "OPEN" and record["status"] == "UPDATED":
            record["status"] = "OPEN"  # opened in this batch: readers see the OPEN, with the latest values
        self.outbox[alert["alert_id"]] = record
        self.changed[alert["alert_id"]] = record

    def _disclose(self, key: AlertKey, alert: dict[str, Any]) -> None:
        ev = self._raw[key]
        k = self.min_cell_count
        num, den, exp = ev.numerator, ev.denominator, ev.expected
        counts = num is not None and den is not None and float(num).is_integer()
        hidden = not counts or den is None or disclosure.is_small(den, k) or disclosure.is_small(
            int(num or 0), k) or disclosure.is_small(den - int(num or 0), k)
        alert["window_start"], alert["window_end"] = ev.start, ev.end
        level = SEVERITY_LEVEL[alert["severity"]]
        if hidden:
            alert.update(numerator=None, denominator=None, expected=None, observed_expected=None)
            ratio = abs(alert["statistic"]) / alert["limit"] if alert["limit"] else 0.0
            alert["rank"] = 100.0 * level + min(99.0, round(ratio, 2))
            return
        assert num is not None and den is not None
        alert.update(numerator=disclosure.round_up(int(num), self.rounding),
                     denominator=disclosure.round_up(den, self.rounding),
                     expected=None if exp is None else round(exp, 2),
                     observed_expected=None if not exp else round(num / exp, 3))
        excess = abs(num - exp) if exp is not None else abs(alert["statistic"]) / (alert["limit"] or 1.0)
        alert["rank"] = 100.0 * level + min(99.0, round(excess, 2))
