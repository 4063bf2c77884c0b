# mypyc: compiled (the per-event path: setup.py)
"""Sequential monitoring of one partition's indicators, per indicator x site. Pure state.

What the monitor stage (``agents/monitor.py``) keeps per partition of
``outcomes.observations`` (partitioned by indicator, so all sites of an indicator
meet here). Product decisions:

* **Order.** Charts take FINAL observations in the order the ascertain stage
  finalises them, which follows its event-time watermark (``closed_time``), not
  arrival at the hospital.
* **Expected risk.** Binary charts use the observation's ``expected`` risk. When it
  is null (an indicator without a risk model) they use the indicator's network rate
  (O + 0.5) / (n + 1) over *complete cohorts*: observations whose follow-up (index
  time + horizon) had ended by the indicator's clock before this one, since the
  stage began. Deaths close before survivors of the same cohort, so a rate over
  everything FINAL would run high; the charts then watch each site against the
  network, not against its own case mix. Corrections do not move this rate. Continuous
  charts standardise the value by (value - expected) / network SD of residuals, or
  (value - network mean) / network SD without an expected value.
* **Warm-up.** Nothing is charted until the indicator has ``warmup`` FINAL
  observations network-wide (``warmup`` complete cohorts when the fallback rate is
  used), and until one follow-up has passed since the earliest index event: in the
  first follow-up after the monitoring starts, only observations *with* the outcome
  can be FINAL (the others close at the horizon), which would look like a huge excess.
  Afterwards outcomes and horizon ends arrive at their steady rates. Skipped
  observations still count in the funnel.
* **Charts.** Risk-adjusted Bernoulli CUSUM up (R_A = 2) and down (R_A = 0.5) and
  VLAD (expected - observed, no limit) for binary indicators; a two-sided EWMA of the
  standardised values for continuous ones; a funnel z-score for both.
* **Limits.** CUSUM limits for the configured ARL0 (:mod:`streams.monitoring.control_limits`),
  per indicator x site from the histogram of expected risks the site's chart has
  used. Every chart starts with the network's limits (from the network's mix,
  recalibrated each time the network's count has grown fourfold). When a site has
  4 x ``warmup`` charted observations, and again each time its count has grown
  fourfold, its own mix is compared with the network's: beyond a total-variation
  distance of 0.2 the site gets limits from its own mix, else it keeps the network's
  (h hardly moves with the mix, 3.16-3.19 for ARL0 1,000 over the mixes in the tests,
  and each limit costs milliseconds of CPU). Limits from mixes of fewer than 2,000
  patients use a coarser chain (150 points, ARL within ~2 %): the mix itself is a
  small sample. Without expected risks every site charts the
  same network rate and keeps the network's limits. The EWMA width L for
  the ARL0 is the same for every chart (the values are standardised).
* **Reset rule.** A CUSUM that crosses its limit opens an alert and restarts at 0
  (Steiner et al. 2000); crossing again while the alert is open updates it. The alert
  resolves after ``resolve_after`` consecutive observations with the chart below half
  its limit. An EWMA alert opens when |Z| crosses the limit and resolves after
  ``resolve_after`` consecutive observations inside the limits (the EWMA is not reset:
  it forgets by itself, and in control it stays inside 99.9 % of the time, so "below
  half" would hold an alert open for good); a crossing on the other side resolves it
  and opens a new one. A funnel alert opens beyond the 99.8 %
  limit and resolves when the site is back inside the 95 % limit (hysteresis, so a site on the line does not
  flap). Evidence of a CUSUM alert: the observations since the chart last stood at 0
  (the change-point estimate), summed over its crossings.
* **Funnel** (Spiegelhalter 2005). Over the last 365 days of ``closed_time``: binary
  z = (O - E) / sqrt(V), E = sum of expected risks and V = sum p(1 - p) when every
  observation had one, else E = n p0, V = n p0 (1 - p0) with p0 the network rate;
  continuous z = (site mean - network mean) / (network SD / sqrt(n)) (of residuals
  when expected values exist). Overdispersion (option): phi = mean of the sites'
  squared z-scores (winsorised at 10 % each end when chosen), z divided by sqrt(phi)
  when phi > 1. Limits 1.96 (95 %) and 3.09 (99.8 %).
* **Corrections (revisions).** A revised observation (late data: a FINAL 0 that a late
  death turns into 1, a FINAL retracted or excluded) is applied as a correction at the
  current point, not by re-running the chart from the revised point (a re-run would need
  every observation's path kept and would move alerts already published): the funnel
  and network totals take the old contribution out and the new one in (exact), VLAD
  moves by the difference (exact: it is a sum), and each CUSUM adds the difference of
  the two log-likelihood-ratio weights and is floored at 0 (the Bernoulli CUSUM's own
  recursion with the revised term), which can raise an alert at once. Only charts that
  had counted the observation are corrected (past warm-up). A redelivered identical
  record changes nothing. Observations older than the funnel window are forgotten (and
  a correction that late is ignored).

Durability: :meth:`MonitorState.take_delta`, :meth:`MonitorState.snapshot` and
:meth:`MonitorState.apply` exchange ``rwe.internal.MonitorDelta`` records.
"""

from __future__ import annotations

import heapq
import math
import struct
from typing import Any, NamedTuple

from streams.monitoring.alerting import UPDATE_EVERY, AlertBook, Evidence
from streams.monitoring.charts import Z95, Z998
from streams.monitoring.control_limits import COARSE_CELLS, CUSUM_CELLS, RiskMix, cusum_limit, ewma_width
from streams.monitoring.feed_health import FeedHealth
from streams.monitoring.readings import MonitorReading
from streams.vocabulary.scopes import NETWORK_ID
from streams.vocabulary.time import DAY_US

FUNNEL_WINDOW_US = 365 * DAY_US
NETWORK = NETWORK_ID  # the network-wide chart of an indicator
CHUNK = 5_000  # observations per changelog record
P_FLOOR = 1e-4
OWN_MIX_DISTANCE = 0.2  # total variation between a site's and the network's risk histograms


Entry = tuple[str, int, float, float | None, int]  # site, closed_time, result, expected, follow-up end


class MonitorConfig(NamedTuple):
    arl0: float = 1000.0
    warmup: int = 30
    resolve_after: int = 200
    ewma_lambda: float = 0.1
    overdispersion: str = "none"
    odds_up: float = 2.0
    odds_down: float = 0.5
    min_cell_count: int = 5
    cell_rounding: int = 0


# Window totals of one indicator at one site (or the network): n, observed (sum of
# outcomes or values), sum of values^2, n with expected, sum expected, sum p(1-p),
# sum residual, sum residual^2.
CNT, OBS, SQ, NEXP, EXP, VAR, RES, RES2 = range(8)
TOTALS = ("n", "o", "x2", "n_exp", "e", "v", "r", "r2")
# Chart fields persisted besides the totals.
STATE = ("c_n", "c_o", "clock", "first_index", "up", "down", "h_up", "h_down", "vlad", "z", "zt", "next_cal",
         "up_n", "up_o", "up_e", "up_start", "down_n", "down_o", "down_e", "down_start", "quiet_up", "quiet_down",
         "quiet_ewma", "over_ewma", "last_time", "own")


class Chart:
    """The monitors of one indicator at one site (the network's totals use it too)."""

    __slots__ = ("funnel_z", "mix", "t", *STATE)

    def __init__(self) -> None:
        self.t = [0.0] * 8
        self.mix = RiskMix()
        self.c_n = self.c_o = self.clock = 0.0  # the network's complete cohorts (see _risk)
        self.first_index = -1.0  # the network's earliest index time: charts start a follow-up later
        self.up = self.down = self.h_up = self.h_down = self.vlad = 0.0
        self.z = self.zt = self.next_cal = self.last_time = 0.0
        self.funnel_z = 0.0  # recomputed from the totals, not persisted
        self.up_n = self.up_o = self.up_e = self.down_n = self.down_o = self.down_e = 0.0
        self.up_start = self.down_start = -1.0   # event time the excursion began; -1: at 0
        self.quiet_up = self.quiet_down = self.quiet_ewma = self.over_ewma = 0.0
        self.own = 0.0  # 1: limits from the site's own patient mix, 0: the network's

    def add(self, y: float, expected: float | None, sign: float) -> None:
        t = self.t
        t[CNT] += sign
        t[OBS] += sign * y
        t[SQ] += sign * y * y
        if expected is not None:
            t[NEXP] += sign
            t[EXP] += sign * expected
            t[VAR] += sign * expected * (1.0 - expected)
            r = y - expected
            t[RES] += sign * r
            t[RES2] += sign * r * r

    def values(self) -> dict[str, float]:
        out = {name: float(getattr(self, name)) for name in STATE}
        out.update(zip(TOTALS, self.t, strict=True))
        return out

    def load(self, values: dict[str, float], mix: list[float]) -> None:
        for name in STATE:
            setattr(self, name, values.get(name, 0.0))
        self.t = [values.get(name, 0.0) for name in TOTALS]
        self.mix = RiskMix(mix)


def _mean_sd(n: float, s: float, s2: float) -> tuple[float, float]:
    mean = s / n
    var = max(0.0, (s2 - n * mean * mean) / (n - 1)) if n > 1 else 0.0
    return mean, math.sqrt(var)


def _run_totals(statistic: float, n: float, observed: float, expected: float, start: float, y: int, p: float,
                at: int) -> tuple[float, float, float, float]:
    """Observations, events, expected events and start of a CUSUM's current run, after one
    more observation: a run ends whenever the statistic is back at zero."""
    if statistic == 0.0:
        return 0.0, 0.0, 0.0, -1.0
    return n + 1, observed + y, expected + p, start if start >= 0 else float(at)


class IndicatorMonitor:
    """All sites of one indicator: charts, the network's totals, the observations in the window."""

    def __init__(self, indicator: str, continuous: bool, config: MonitorConfig, alerts: AlertBook,
                 follow_up_us: int = 0, better: str = "lower") -> None:
        self.indicator = indicator
        # A CUSUM crossing in the direction of worse outcomes is CRITICAL, one towards better INFO.
        worse = "down" if better == "higher" else "up"
        self._cusum_severity = {side: "CRITICAL" if side == worse else "INFO" for side in ("up", "down")}
        self.follow_up_us = follow_up_us
        self.continuous = continuous
        self.config = config
        self.alerts = alerts
        self.network = Chart()
        self.charts: dict[str, Chart] = {}
        # observation id -> (site, closed_time, outcome or value, expected or None, follow-up end)
        self.seen: dict[str, Entry] = {}
        self.due: list[tuple[int, float]] = []  # heap: (follow-up end, outcome) of cohorts not complete
        self.dirty: set[str] = set()      # charts changed since the last delta (site ids, network)
        self.pending: dict[str, Entry | None] = {}  # observations changed since the last delta
        self.funnel_due = False
        self._log_up = math.log(config.odds_up)
        self._log_down = math.log(config.odds_down)
        self._ewma_width = ewma_width(config.ewma_lambda, config.arl0) if continuous else 0.0

    def chart(self, site: str) -> Chart:
        chart = self.charts.get(site)
        if chart is None:
            chart = self.charts[site] = Chart()
        return chart

    # --- observations --------------------------------------------------------
    @property
    def clock(self) -> int:
        """The indicator's event-time clock: the newest closed_time seen (UTC us)."""
        return int(self.network.clock)

    def observe(self, obs_id: str, site: str, closed_time: int, result: float, expected: float | None,
                index_time: int = 0) -> bool:
        """Apply a FINAL observation (``result``: outcome 0/1 or the value). False: unchanged."""
        old = self.seen.get(obs_id)
        if old is not None:
            if old[0] == site and old[2] == result and old[3] == expected:
                return False
            self._remove(obs_id, old)
            self._add(obs_id, (site, old[1], result, expected, old[4]))
            self._correct(old, result)
            return True
        if closed_time < self.clock - FUNNEL_WINDOW_US:
            return False  # older than the window: it would leave at once
        net = self.network
        if net.first_index < 0 or index_time < net.first_index:
            net.first_index = float(index_time)
        if closed_time > net.clock:
            net.clock = float(closed_time)
            self._complete(closed_time)
        due = index_time + self.follow_up_us
        if not self.continuous and due > net.clock:
            heapq.heappush(self.due, (due, result))
        elif not self.continuous:
            net.c_n += 1
            net.c_o += result
        chart = self.chart(site)
        ready = net.t[CNT] if self.continuous or expected is not None else net.c_n
        if ready >= self.config.warmup and closed_time >= net.first_index + self.follow_up_us:
            if self.continuous:
                self._chart_value(site, chart, closed_time, result, expected)
            else:
                self._chart_outcome(site, chart, closed_time, int(result), expected)
        elif not self.continuous:
            chart.mix.add(self._risk(expected))
            self.network.mix.add(self._risk(expected))
        self._add(obs_id, (site, closed_time, result, expected, due))
        chart.last_time = float(closed_time)
        return True

    def _complete(self, clock: int) -> None:
        """Count the cohorts whose follow-up ended by ``clock`` in the fallback rate."""
        due, net = self.due, self.network
        while due and due[0][0] <= clock:
            _t, y = heapq.heappop(due)
            net.c_n += 1
            net.c_o += y

    def retract(self, obs_id: str) -> bool:
        """An observation left the denominator (EXCLUDED or superseded after FINAL)."""
        old = self.seen.get(obs_id)
        if old is None:
            return False
        self._remove(obs_id, old)
        self._correct(old, None)
        return True

    def _correct(self, old: Entry, result: float | None) -> None:
        """A charted binary observation's outcome revised to ``result`` (None: it left): its
        CUSUM weights and VLAD term corrected at the current point (see the module doc)."""
        site, closed_time, y_old, expected, _due = old
        chart = self.charts.get(site)
        if (self.continuous or chart is None or chart.h_up <= 0
                or closed_time < self.network.first_index + self.follow_up_us):
            return  # not charted (warm-up), or a continuous chart (its EWMA forgets by itself)
        p = self._risk(expected)
        base_up = math.log(1.0 - p + self.config.odds_up * p)
        base_down = math.log(1.0 - p + self.config.odds_down * p)
        # the log-likelihood-ratio weight of outcome y is y * log(R) - base; a retraction's new weight is 0
        new_up = result * self._log_up - base_up if result is not None else 0.0
        new_down = result * self._log_down - base_down if result is not None else 0.0
        chart.up = max(0.0, chart.up + new_up - (y_old * self._log_up - base_up))
        chart.down = max(0.0, chart.down + new_down - (y_old * self._log_down - base_down))
        chart.vlad += (y_old - result) if result is not None else (y_old - p)
        at = int(self.network.clock)
        if chart.up >= chart.h_up:
            self._cusum_lifecycle(site, chart, at, "up")
        if chart.down >= chart.h_down:
            self._cusum_lifecycle(site, chart, at, "down")

    def _add(self, obs_id: str, entry: Entry) -> None:
        self.seen[obs_id] = entry
        self.pending[obs_id] = entry
        self.chart(entry[0]).add(entry[2], entry[3], 1.0)
        self.network.add(entry[2], entry[3], 1.0)
        self.dirty.update((entry[0], NETWORK))
        self.funnel_due = True

    def _remove(self, obs_id: str, entry: Entry) -> None:
        del self.seen[obs_id]
        self.pending[obs_id] = None
        self.chart(entry[0]).add(entry[2], entry[3], -1.0)
        self.network.add(entry[2], entry[3], -1.0)
        self.dirty.update((entry[0], NETWORK))
        self.funnel_due = True

    def evict(self) -> int:
        """Forget observations that left the funnel window (approximately in closed_time order)."""
        cutoff = self.clock - FUNNEL_WINDOW_US
        gone = [k for k, e in _leading(self.seen, cutoff)]
        for k in gone:
            self._remove(k, self.seen[k])
        return len(gone)

    def _risk(self, expected: float | None) -> float:
        if expected is None:
            net = self.network
            expected = (net.c_o + 0.5) / (net.c_n + 1.0)
        return min(1.0 - P_FLOOR, max(P_FLOOR, expected))

    # --- charts --------------------------------------------------------------
    def _limits(self, chart: Chart) -> None:
        cfg = self.config
        net = self.network
        if net.mix.total >= net.next_cal:
            key, cells = net.mix.key(), _cells(net.mix.total)
            net.h_up = cusum_limit(key, cfg.odds_up, cfg.arl0, net.h_up, cells)
            net.h_down = cusum_limit(key, cfg.odds_down, cfg.arl0, net.h_down, cells)
            net.next_cal = float(4 * net.mix.total)
            self.dirty.add(NETWORK)
        n = chart.mix.total
        if n >= chart.next_cal and n >= 4 * cfg.warmup and chart.t[NEXP]:
            chart.next_cal = float(4 * n)
            chart.own = float(chart.mix.distance(net.mix) > OWN_MIX_DISTANCE)
            if chart.own:
                key, cells = chart.mix.key(), _cells(n)
                chart.h_up = cusum_limit(key, cfg.odds_up, cfg.arl0, chart.h_up or net.h_up, cells)
                chart.h_down = cusum_limit(key, cfg.odds_down, cfg.arl0, chart.h_down or net.h_down, cells)
        if not chart.own:
            chart.h_up, chart.h_down = net.h_up, net.h_down

    def _chart_outcome(self, site: str, chart: Chart, at: int, y: int, expected: float | None) -> None:
        p = self._risk(expected)
        chart.mix.add(p)
        self.network.mix.add(p)
        self._limits(chart)
        base_up = math.log(1.0 - p + self.config.odds_up * p)
        base_down = math.log(1.0 - p + self.config.odds_down * p)
        chart.up = max(0.0, chart.up + y * self._log_up - base_up)
        chart.down = max(0.0, chart.down + y * self._log_down - base_down)
        chart.vlad += p - y
        chart.up_n, chart.up_o, chart.up_e, chart.up_start = _run_totals(
            chart.up, chart.up_n, chart.up_o, chart.up_e, chart.up_start, y, p, at)
        chart.down_n, chart.down_o, chart.down_e, chart.down_start = _run_totals(
            chart.down, chart.down_n, chart.down_o, chart.down_e, chart.down_start, y, p, at)
        open_alerts = self.alerts.open  # the common case, no crossing and no open alert, stays cheap
        if chart.up >= chart.h_up or (open_alerts and (self.indicator, site, "cusum_up") in open_alerts):
            self._cusum_lifecycle(site, chart, at, "up")
        if chart.down >= chart.h_down or (open_alerts and (self.indicator, site, "cusum_down") in open_alerts):
            self._cusum_lifecycle(site, chart, at, "down")

    def _cusum_lifecycle(self, site: str, chart: Chart, at: int, side: str) -> None:
        s, h = getattr(chart, side), getattr(chart, f"h_{side}")
        key = (self.indicator, site, f"cusum_{side}")
        if s >= h:
            start = getattr(chart, f"{side}_start")
            self.alerts.signal(key, s, h, at, Evidence(
                getattr(chart, f"{side}_o"), int(getattr(chart, f"{side}_n")), getattr(chart, f"{side}_e"),
                int(start) if start >= 0 else at, at), severity=self._cusum_severity[side])
            setattr(chart, side, 0.0)  # restart after the signal
            for f in ("n", "o", "e"):
                setattr(chart, f"{side}_{f}", 0.0)
            setattr(chart, f"{side}_start", -1.0)
            setattr(chart, f"quiet_{side}", 0.0)
        elif self.alerts.is_open(key):
            quiet = getattr(chart, f"quiet_{side}") + 1 if s < h / 2 else 0.0
            setattr(chart, f"quiet_{side}", quiet)
            if quiet >= self.config.resolve_after:
                self.alerts.resolve(key, at)
                setattr(chart, f"quiet_{side}", 0.0)

    def _chart_value(self, site: str, chart: Chart, at: int, x: float, expected: float | None) -> None:
        t = self.network.t
        if expected is not None and t[NEXP] > 1:
            _m, sd = _mean_sd(t[NEXP], t[RES], t[RES2])
            e = (x - expected) / sd if sd > 0 else 0.0
        else:
            mean, sd = _mean_sd(t[CNT], t[OBS], t[SQ])
            e = (x - mean) / sd if sd > 0 else 0.0
        lam = self.config.ewma_lambda
        chart.z = lam * e + (1.0 - lam) * chart.z
        chart.zt += 1
        limit = self._ewma_limit(chart)
        key = (self.indicator, site, "ewma")
        over = abs(chart.z) > limit
        if over and self.alerts.is_open(key) and (self.alerts.open[key]["statistic"] > 0) != (chart.z > 0):
            self.alerts.resolve(key, at)  # crossed on the other side: a new signal
        if over and not self.alerts.is_open(key):
            self.alerts.signal(key, chart.z, limit, at, self._value_evidence(chart, at))
            chart.over_ewma = chart.quiet_ewma = 0.0
        elif self.alerts.is_open(key):
            chart.quiet_ewma = chart.quiet_ewma + 1 if not over else 0.0
            chart.over_ewma = chart.over_ewma + 1 if over else 0.0
            if over and chart.over_ewma % UPDATE_EVERY == 0:
                self.alerts.signal(key, chart.z, limit, at, self._value_evidence(chart, at), accumulate=False)
            if chart.quiet_ewma >= self.config.resolve_after:
                self.alerts.resolve(key, at)
                chart.quiet_ewma = 0.0

    def _ewma_limit(self, chart: Chart) -> float:
        lam = self.config.ewma_lambda
        return self._ewma_width * math.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * chart.zt)))

    def _value_evidence(self, chart: Chart, at: int) -> Evidence:
        t = chart.t
        expected = t[EXP] if t[NEXP] == t[CNT] and t[CNT] else None
        return Evidence(None, int(t[CNT]), expected, None, at)

    # --- funnel ----------------------------------------------------------------
    def funnel(self, lifecycle: bool = True) -> None:
        """Recompute every site's funnel z-score and (``lifecycle``) its alerts, once per
        batch. The z-scores follow from the totals, so the changelog does not carry them."""
        self.funnel_due = False
        net = self.network.t
        if net[CNT] < 2:
            return
        raw: dict[str, float] = {}
        for site, chart in self.charts.items():
            z = self._funnel_z(chart.t, net)
            if z is not None:
                raw[site] = z
        phi = self._overdispersion(list(raw.values()))
        scale = 1.0 / math.sqrt(phi)
        for site, z in raw.items():
            chart = self.charts[site]
            chart.funnel_z = z * scale
            key = (self.indicator, site, "funnel")
            at = int(chart.last_time)
            if not lifecycle:
                continue
            if not self.alerts.is_open(key):
                if abs(chart.funnel_z) > Z998 and chart.t[CNT] >= self.config.warmup:
                    self.alerts.signal(key, chart.funnel_z, Z998, at, self._funnel_evidence(chart, at))
            elif abs(chart.funnel_z) < Z95:
                self.alerts.resolve(key, at)
            elif chart.t[CNT] - (self.alerts.evidence_size(key) or 0) >= UPDATE_EVERY:
                self.alerts.signal(key, chart.funnel_z, Z998, at, self._funnel_evidence(chart, at), accumulate=False)

    def _funnel_z(self, t: list[float], net: list[float]) -> float | None:
        n = t[CNT]
        if n < 1:
            return None
        if self.continuous:
            if t[NEXP] == n and net[NEXP] > 1:
                _m, sd = _mean_sd(net[NEXP], net[RES], net[RES2])
                return (t[RES] / n) / (sd / math.sqrt(n)) if sd > 0 else None
            mean, sd = _mean_sd(net[CNT], net[OBS], net[SQ])
            return (t[OBS] / n - mean) / (sd / math.sqrt(n)) if sd > 0 else None
        if t[NEXP] == n:
            expected, var = t[EXP], t[VAR]
        else:
            p0 = net[OBS] / net[CNT]
            expected, var = n * p0, n * p0 * (1.0 - p0)
        return (t[OBS] - expected) / math.sqrt(var) if var > 0 else None

    def _overdispersion(self, zs: list[float]) -> float:
        mode = self.config.overdispersion
        if mode == "none" or len(zs) < 3:
            return 1.0
        zs = sorted(zs)
        if mode == "winsorised":
            k = int(0.1 * len(zs))
            if k:
                zs = [min(max(z, zs[k]), zs[-k - 1]) for z in zs]
        return max(1.0, sum(z * z for z in zs) / len(zs))

    def _funnel_evidence(self, chart: Chart, at: int) -> Evidence:
        t, net = chart.t, self.network.t
        if self.continuous:
            return self._value_evidence(chart, at)
        expected = t[EXP] if t[NEXP] == t[CNT] else t[CNT] * net[OBS] / net[CNT]
        return Evidence(t[OBS], int(t[CNT]), expected, max(0, self.clock - FUNNEL_WINDOW_US), at)

    # --- readings --------------------------------------------------------------
    def readings(self) -> list[MonitorReading]:
        out: list[MonitorReading] = []
        ind, alerts = self.indicator, self.alerts
        for site, c in self.charts.items():
            if self.continuous:
                out.append(MonitorReading(ind, site, "ewma", c.z, self._ewma_limit(c) if c.zt else None,
                                          alerts.is_open((ind, site, "ewma"))))
            else:
                out.append(MonitorReading(ind, site, "cusum_up", c.up, c.h_up or None,
                                          alerts.is_open((ind, site, "cusum_up"))))
                out.append(MonitorReading(ind, site, "cusum_down", c.down, c.h_down or None,
                                          alerts.is_open((ind, site, "cusum_down"))))
                out.append(MonitorReading(ind, site, "vlad", c.vlad, None, False))
            out.append(MonitorReading(ind, site, "funnel", c.funnel_z, Z998, alerts.is_open((ind, site, "funnel"))))
        return out


def _cells(patients: int) -> int:
    """Grid of the limit's Markov chain: coarse while the mix itself is a small sample."""
    return COARSE_CELLS if patients < 2000 else CUSUM_CELLS


def _leading(seen: dict[str, Entry], cutoff: int) -> list[tuple[str, Any]]:
    out = []
    for k, e in seen.items():
        if e[1] >= cutoff:
            break
        out.append((k, e))
    return out


class MonitorState:
    """The monitors of one input partition: indicators, feed health, open alerts."""

    def __init__(self, kinds: dict[str, tuple[bool, int]], config: MonitorConfig, feed: FeedHealth,
                 better: dict[str, str] | None = None) -> None:
        self.kinds = kinds  # indicator -> (continuous, follow-up in us)
        self.better = better or {}  # indicator -> "higher" where higher is better (default "lower")
        self.config = config
        self.alerts = AlertBook(config.min_cell_count, config.cell_rounding)
        self.indicators: dict[str, IndicatorMonitor] = {}
        self.feed = feed
        feed.alerts = self.alerts

    def __len__(self) -> int:
        return sum(len(m.seen) for m in self.indicators.values())

    def monitor(self, indicator: str) -> IndicatorMonitor:
        m = self.indicators.get(indicator)
        if m is None:
            continuous, follow_up = self.kinds[indicator]
            m = self.indicators[indicator] = IndicatorMonitor(indicator, continuous, self.config, self.alerts,
                                                              follow_up, self.better.get(indicator, "lower"))
        return m

    def end_batch(self) -> None:
        for m in self.indicators.values():
            if m.funnel_due:
                m.funnel()

    def evict(self) -> int:
        return sum(m.evict() for m in self.indicators.values())

    def readings(self, now: int | None = None) -> list[MonitorReading]:
        """Every monitor's reading (``now``: wall clock for feed silence, UTC us; default now)."""
        out = [r for m in self.indicators.values() for r in m.readings()]
        out.extend(self.feed.readings(now))
        return out

    # --- changelog -------------------------------------------------------------
    def take_delta(self) -> list[dict[str, Any]]:
        charts: list[dict[str, Any]] = []
        observations: list[dict[str, Any]] = []
        for ind, m in self.indicators.items():
            for site in m.dirty:
                chart = m.network if site == NETWORK else m.charts[site]
                charts.append(_chart_record(ind, site, chart))
            m.dirty = set()
            observations.extend(_observation_record(ind, k, e) for k, e in m.pending.items())
            m.pending = {}
        alerts = [{"alert": a, "evidence": self.alerts.evidence(a["alert_id"])} for a in self.alerts.take_changed()]
        feeds = self.feed.take_delta()
        if not (charts or observations or alerts or feeds):
            return []
        starts = range(0, max(len(observations), 1), CHUNK)
        return [{"snapshot": False, "charts": charts if i == 0 else [], "observations": observations[i:i + CHUNK],
                 "alerts": alerts if i == 0 else [], "feeds": feeds if i == 0 else []} for i in starts]

    def snapshot(self) -> list[dict[str, Any]]:
        charts: list[dict[str, Any]] = []
        observations: list[dict[str, Any]] = []
        for ind, m in self.indicators.items():
            charts.append(_chart_record(ind, NETWORK, m.network))
            charts.extend(_chart_record(ind, site, c) for site, c in m.charts.items())
            observations.extend(_observation_record(ind, k, e) for k, e in m.seen.items())
            m.dirty, m.pending = set(), {}
        self.alerts.take_changed()
        alerts = [{"alert": a, "evidence": self.alerts.evidence(a["alert_id"])} for a in self.alerts]
        feeds = self.feed.snapshot()
        starts = range(0, max(len(observations), 1), CHUNK)
        return [{"snapshot": i == 0, "charts": charts if i == 0 else [], "observations": observations[i:i + CHUNK],
                 "alerts": alerts if i == 0 else [], "feeds": feeds if i == 0 else []} for i in starts]

    def apply(self, record: dict[str, Any]) -> None:
        if record["snapshot"]:
            self.indicators.clear()
            self.alerts.open.clear()
            self.feed.clear()
        for c in record["charts"]:
            if c["indicator"] not in self.kinds:
                continue
            m = self.monitor(c["indicator"])
            chart = m.network if c["site_id"] == NETWORK else m.chart(c["site_id"])
            mix = c["mix"]
            chart.load(c["values"], list(struct.unpack(f"<{len(mix) // 8}d", mix)))
        for o in record["observations"]:
            if o["indicator"] not in self.kinds:
                continue
            m = self.monitor(o["indicator"])
            if o["gone"]:
                m.seen.pop(o["observation_id"], None)
            else:
                m.seen[o["observation_id"]] = (o["site_id"], o["closed_time"], o["outcome"], o["expected"], o["due"])
        for a in record["alerts"]:
            self.alerts.restore(a["alert"], a["evidence"])
        self.feed.apply(record["feeds"])
        self.alerts.take_changed()
        self.alerts.drain()

    def restored(self) -> None:
        for m in self.indicators.values():
            m.dirty, m.pending = set(), {}
            m.funnel(lifecycle=False)
            if not m.continuous:  # cohorts still in follow-up (the rest are in the network's totals)
                m.due = [(e[4], e[2]) for e in m.seen.values() if e[4] > m.clock and e[4] > e[1]]
                heapq.heapify(m.due)


def _chart_record(indicator: str, site: str, chart: Chart) -> dict[str, Any]:
    mix = chart.mix.state()
    return {"indicator": indicator, "site_id": site, "values": chart.values(),
            "mix": struct.pack(f"<{len(mix)}d", *mix)}


def _observation_record(indicator: str, obs_id: str, e: Entry | None) -> dict[str, Any]:
    if e is None:
        return {"observation_id": obs_id, "indicator": indicator, "site_id": "", "closed_time": 0, "outcome": None,
                "expected": None, "due": 0, "gone": True}
    return {"observation_id": obs_id, "indicator": indicator, "site_id": e[0], "closed_time": e[1],
            "outcome": e[2], "expected": e[3], "due": e[4], "gone": False}
