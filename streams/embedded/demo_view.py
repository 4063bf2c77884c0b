"""The demo's live terminal view: indicators per area and site, with 95 % intervals."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from rich.console import Group
from rich.table import Table
from rich.text import Text

from streams.catalogue.definitions import Catalogue
from streams.catalogue.sites import Site

AREA_TITLES = {"cardiovascular": "Cardiovascular (BigData@Heart)", "prostate_cancer": "Prostate cancer (PIONEER)",
               "hematologic": "Hematologic malignancies (HARMONY)", "dementia": "Dementia (ROADMAP)"}
SnapshotSource = Callable[[], dict[str, dict[str, Any]]]
AlertSource = Callable[[], list[dict[str, Any]]]
MARKED_METHODS = ("cusum_up", "funnel")  # a deterioration: marked on the indicator's cell
ALERT_ROWS = 8


def metric_total(registry: CollectorRegistry, name: str, **match: str) -> float:
    total = 0.0
    for metric in registry.collect():
        for s in metric.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                total += s.value
    return total


def cell_text(snapshot: dict[str, Any] | None, network: dict[str, Any] | None) -> Text:
    """One indicator value: proportion with interval, or mean; flagged against the network;
    under it the risk-adjusted O/E ratio when the catalogue has a model."""
    if snapshot is None:
        return Text("-", style="dim")
    if snapshot["suppressed"]:
        return Text("suppressed", style="dim italic")
    text = _value_text(snapshot, network)
    if snapshot.get("observed_expected") is not None:
        text.append(f"\nO/E {snapshot['observed_expected']:.2f}", style="dim")
    return text


def _value_text(snapshot: dict[str, Any], network: dict[str, Any] | None) -> Text:
    n = snapshot["denominator"]
    if snapshot["kind"] == "PROPORTION":
        if snapshot["proportion"] is None:
            return Text(f"n={n}", style="dim")
        text = f"{100 * snapshot['proportion']:.1f}% [{100 * snapshot['ci_low']:.0f}-{100 * snapshot['ci_high']:.0f}]"
        style = ""
        if network and network.get("proportion") is not None and snapshot["scope"] != "NETWORK":
            if snapshot["ci_low"] > network["proportion"]:
                style = "bold red"  # worse than the network beyond chance (for adverse outcomes)
            elif snapshot["ci_high"] < network["proportion"]:
                style = "green"
        return Text(f"{text} n={n}", style=style)
    mean = snapshot["mean"]
    return Text(f"{mean:.1f} ({snapshot['median']:.1f}) n={n}" if mean is not None else f"n={n}")


class LiveView:
    """Renders the live view from the worker's metrics and the aggregate stage's snapshots."""

    def __init__(self, catalogue: Catalogue, sites: dict[str, Site], registry: CollectorRegistry,
                 snapshots: SnapshotSource, window: int | None = 365,
                 alerts: AlertSource = list) -> None:
        self.catalogue = catalogue
        self.sites = sorted(sites)
        self.registry = registry
        self.snapshots = snapshots
        self.window = window
        self.alerts = alerts
        self.started = time.monotonic()

    def _window_key(self) -> str:
        return "all" if self.window is None else str(self.window)

    def render(self, published: int, total: int, sim_time: datetime | None) -> Group:
        r = self.registry
        out = metric_total(r, "rwe_stage_events_out_total", stage="normalise")
        elapsed = time.monotonic() - self.started
        snaps = self.snapshots()
        as_of = max((s["as_of"] for s in snaps.values()), default=0)
        head = Table.grid(padding=(0, 2))
        head.add_row("feed date", sim_time.strftime("%Y-%m-%d") if sim_time else "-",
                     "indicators as of", datetime.fromtimestamp(as_of / 1e6, UTC).strftime("%Y-%m-%d") if as_of
                     else "-", "wall time", f"{elapsed:.0f} s")
        head.add_row("published", f"{published}/{total}", "normalised", f"{out:.0f} ({out / max(elapsed, 1):.0f}/s)",
                     "observations", f"{metric_total(r, 'rwe_observations_total', status='FINAL'):.0f} final")
        head.add_row("duplicates dropped", f"{metric_total(r, 'rwe_duplicates_total', stage='normalise'):.0f}",
                     "dead letters", f"{metric_total(r, 'rwe_dead_letters_total'):.0f}",
                     "late events", f"{metric_total(r, 'rwe_late_events_total'):.0f}")
        parts: list[Any] = [head]
        window = self._window_key()
        alerts = self.alerts()
        marked = {(a["indicator"], a["scope_id"]) for a in alerts
                  if a["method"] in MARKED_METHODS and (a["method"] != "funnel" or a["statistic"] > 0)}
        for area, indicators in self.catalogue.by_area().items():
            title = (f"{AREA_TITLES.get(area, area)}: index events in the last {self.window} days with follow-up "
                     "complete" if self.window else f"{AREA_TITLES.get(area, area)}: all index events")
            table = Table(title=title, title_justify="left", expand=False, pad_edge=False)
            table.add_column("indicator")
            table.add_column("network", justify="right")
            for site in self.sites:
                table.add_column(site, justify="right")
            for ind in indicators:
                network = snaps.get(f"{ind.id}|NETWORK|network|{window}")
                row = [Text(ind.id), cell_text(network, None)]
                for site in self.sites:
                    text = cell_text(snaps.get(f"{ind.id}|SITE|{site}|{window}"), network)
                    if (ind.id, site) in marked:
                        text = Text.assemble(Text("ALERT ", style="bold white on red"), text)
                    row.append(text)
                table.add_row(*row)
            parts.append(table)
        parts.append(Text("red: site's 95 % interval lies above the network rate; green: below. "
                          "Continuous: mean (median). O/E: observed over expected for the case mix "
                          "(catalogue risk models). Small cells are suppressed. ALERT: an open CUSUM or "
                          "funnel alert for a worse outcome.", style="dim"))
        parts.append(alerts_table(alerts))
        return Group(*parts)


def alerts_table(alerts: list[dict[str, Any]]) -> Table:
    """The open alerts, highest triage rank first."""
    table = Table(title=f"Open alerts ({len(alerts)}), highest rank first", title_justify="left", pad_edge=False)
    for column in ("severity", "method", "indicator", "site", "statistic / limit", "O/E", "observed / n",
                   "since (event time)"):
        table.add_column(column)
    for a in alerts[:ALERT_ROWS]:
        evidence = f"{a['numerator']}/{a['denominator']}" if a["denominator"] is not None else "suppressed"
        style = {"CRITICAL": "bold red", "WARNING": "yellow"}.get(a["severity"], "")
        table.add_row(Text(a["severity"], style=style), a["method"], a["indicator"] or "(feed)", a["scope_id"],
                      f"{a['statistic']:.2f} / {a['limit']:.2f}",
                      "-" if a["observed_expected"] is None else f"{a['observed_expected']:.2f}", evidence,
                      datetime.fromtimestamp(a["first_seen"] / 1e6, UTC).strftime("%Y-%m-%d"))
    if len(alerts) > ALERT_ROWS:
        table.caption = f"... and {len(alerts) - ALERT_ROWS} more (rwe alerts)"
    return table
