"""Control limits of the sequential monitors, from a configured in-control average run length.

The in-control ARL (ARL0) of a chart is the mean number of observations until it
signals when nothing has changed. A limit is the value that gives the configured
ARL0 (``RWE_MONITOR_ARL0``, in observations of one indicator at one site).

* **Risk-adjusted Bernoulli CUSUM.** In control, each patient's outcome is drawn at
  the patient's own expected risk; the patient mix is the histogram of expected risks
  the chart has seen (:class:`RiskMix`). The ARL of a limit h is the expected
  absorption time of the Markov chain of the CUSUM over that simulated mix
  (Brook & Evans 1972, the method Steiner et al. 2000 used for this chart): the
  statistic on a grid of ``cells`` points in [0, h), each jump split between the two
  neighbouring grid points so the mean step is kept. This integrates over the
  simulated patients and outcomes exactly instead of sampling them, so a limit costs
  milliseconds and does not depend on a random seed; :func:`streams.monitoring.charts.run_lengths`
  (Monte Carlo) cross-checks it in the tests, and the normal-CUSUM case of the same
  chain is checked against R's ``spc::xcusum.arl`` (``tests/reference/arl.R``).
  The limit is found by regula falsi on log ARL (ARL0 to 0.1 %).
* **EWMA** on standardised values (two-sided, the catalogue's time-varying limits,
  "vacl" in spc): the chain of Lucas & Saccucci (1990) run through the first steps
  with their narrower limits, then the fixed-limit chain's absorption time from the
  state distribution reached. Checked against ``spc::xewma.arl(limits = "vacl")``.

Limits are cached per process by their inputs (the mix rounded, :meth:`RiskMix.key`),
so sites with the same patient mix cost one computation; a chart keeps its limits in
the changelog, so a restart computes none.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

RISK_BINS = 50  # expected risks are histogrammed in bins of 0.02
CUSUM_CELLS = 300  # ARL within ~1 % of the chain's limit (tests/unit/test_control_limits.py)
COARSE_CELLS = 150  # within ~2 %: enough for a mix of fewer than 2,000 patients, 8x cheaper
Mix = tuple[tuple[float, float], ...]  # (risk, weight) pairs
EWMA_CELLS = 201   # odd: a cell centred on the target


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[float])
    return 0.5 * (1.0 + erf(x / math.sqrt(2.0)))


class RiskMix:
    """Histogram of the expected risks a chart has seen (the reference patient mix): per
    bin of 0.02, the count and the sum of the risks, so each bin stands for its mean risk."""

    __slots__ = ("counts", "sums")

    def __init__(self, state: Sequence[float] | None = None) -> None:
        """``state``: :meth:`state` of a mix (counts, then sums)."""
        self.counts = [int(c) for c in state[:RISK_BINS]] if state else [0] * RISK_BINS
        self.sums = list(state[RISK_BINS:]) if state else [0.0] * RISK_BINS

    def add(self, risk: float) -> None:
        i = min(int(risk * RISK_BINS), RISK_BINS - 1)
        self.counts[i] += 1
        self.sums[i] += risk

    def state(self) -> list[float]:
        return [*map(float, self.counts), *self.sums]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def support(self) -> tuple[tuple[float, float], ...]:
        """(risk, weight) per non-empty bin: the bin's mean risk and its share."""
        n = self.total
        return tuple((self.sums[i] / c, c / n) for i, c in enumerate(self.counts) if c)

    def distance(self, other: RiskMix) -> float:
        """Total variation distance between the two histograms (0: the same mix, 1: disjoint)."""
        n, m = self.total, other.total
        if not n or not m:
            return 1.0
        return 0.5 * sum(abs(a / n - b / m) for a, b in zip(self.counts, other.counts, strict=True))

    def key(self) -> Mix:
        """The support with risks rounded to 2 significant digits and weights to 0.02 (at
        least 0.02 per non-empty bin), renormalised: the cache key of a limit, so similar
        mixes (the same network rate at every site, say) share one computation."""
        rounded = [(float(f"{r:.2g}"), max(0.02, round(w / 0.02) * 0.02)) for r, w in self.support()]
        total = sum(w for _r, w in rounded)
        return tuple((r, w / total) for r, w in rounded)


def cusum_arl(mix: Sequence[tuple[float, float]], odds_ratio: float, limit: float, true_odds_ratio: float = 1.0,
              cells: int = CUSUM_CELLS) -> float:
    """ARL of a risk-adjusted Bernoulli CUSUM with limit ``limit`` over patients drawn from ``mix``
    ((risk, weight) pairs), outcomes at each risk times ``true_odds_ratio`` in odds."""
    risks = np.array([r for r, _w in mix])
    weights = np.array([w for _r, w in mix])
    odds = risks / (1.0 - risks) * true_odds_ratio
    p_true = odds / (1.0 + odds)
    base = -np.log(1.0 - risks + odds_ratio * risks)
    steps = np.concatenate([base + math.log(odds_ratio), base])
    probs = np.concatenate([weights * p_true, weights * (1.0 - p_true)])
    return _discrete_cusum_arl(steps, probs, limit, cells)


def _discrete_cusum_arl(steps: np.ndarray, probs: np.ndarray, limit: float, cells: int) -> float:
    width = limit / cells
    grid = np.arange(cells) * width
    q = np.zeros((cells, cells))
    rows = np.arange(cells)
    for step, prob in zip(steps, probs, strict=True):
        nxt = np.maximum(0.0, grid + step) / width
        low = np.floor(nxt).astype(np.int64)
        frac = nxt - low
        inside = low < cells            # value below the limit
        np.add.at(q, (rows[inside], low[inside]), prob * (1.0 - frac[inside]))
        upper = inside & (low + 1 < cells)  # the share rounded up may cross the limit: absorbed
        np.add.at(q, (rows[upper], low[upper] + 1), prob * frac[upper])
    arl = np.linalg.solve(np.eye(cells) - q, np.ones(cells))
    return float(arl[0])


def normal_cusum_arl(reference: float, limit: float, mean: float = 0.0, cells: int = CUSUM_CELLS) -> float:
    """ARL of the one-sided CUSUM S_t = max(0, S_{t-1} + X_t - k), X ~ N(mean, 1), signalling when
    S_t > h (Brook & Evans: midpoints of cells of width 2h / (2 cells - 1), 0 an atom)."""
    width = 2.0 * limit / (2 * cells - 1)
    centres = np.arange(cells) * width
    edges = centres[None, :] + width / 2.0 - centres[:, None] + reference - mean  # upper edges of targets
    cdf = _normal_cdf(edges)
    q = np.diff(np.concatenate([np.zeros((cells, 1)), cdf], axis=1), axis=1)
    q[:, 0] = cdf[:, 0]  # everything below the first upper edge lands on the atom at 0
    arl = np.linalg.solve(np.eye(cells) - q, np.ones(cells))
    return float(arl[0])


def ewma_arl(weight: float, width: float, mean: float = 0.0, cells: int = EWMA_CELLS, varying: bool = True) -> float:
    """ARL of the two-sided EWMA of N(mean, 1) values from Z_0 = 0 with limits
    +/- width sqrt(lambda / (2 - lambda) (1 - (1 - lambda)^(2t))) (``varying``; else the
    asymptotic limits)."""
    lam = weight
    half = width * math.sqrt(lam / (2.0 - lam))
    cell = 2.0 * half / cells
    centres = -half + (np.arange(cells) + 0.5) * cell
    lower = (centres[None, :] - cell / 2.0 - (1.0 - lam) * centres[:, None]) / lam - mean
    upper = lower + cell / lam
    q = _normal_cdf(upper) - _normal_cdf(lower)
    fixed = np.linalg.solve(np.eye(cells) - q, np.ones(cells))
    if not varying:
        return float(fixed[cells // 2])
    # Early steps: propagate the state distribution and absorb what lies beyond each step's limit.
    state = np.zeros(cells)
    state[cells // 2] = 1.0
    arl = 0.0
    t = 0
    while (1.0 - lam) ** (2 * t) > 1e-9:
        arl += state.sum()
        t += 1
        state = state @ q
        bound = half * math.sqrt(1.0 - (1.0 - lam) ** (2 * t))
        state[np.abs(centres) > bound] = 0.0
    return arl + float(state @ fixed)


def _solve(arl_of: Callable[[float], float], target: float, low: float, high: float,
           tolerance: float = 1e-3) -> float:
    """The limit whose ARL is ``target`` (ARL increases with the limit, log ARL almost
    linearly): regula falsi on log ARL inside a bracket that is widened until it holds."""
    goal = math.log(target)
    f_low, f_high = math.log(arl_of(low)) - goal, math.log(arl_of(high)) - goal
    while f_high < 0:
        low, f_low = high, f_high
        high *= 2.0
        f_high = math.log(arl_of(high)) - goal
    while f_low > 0:
        high, f_high = low, f_low
        low /= 2.0
        f_low = math.log(arl_of(low)) - goal
    for _ in range(60):
        mid = high - f_high * (high - low) / (f_high - f_low)
        mid = min(max(mid, low + 0.01 * (high - low)), high - 0.01 * (high - low))  # stay inside
        f_mid = math.log(arl_of(mid)) - goal
        if abs(f_mid) < tolerance:
            return mid
        if f_mid < 0:
            low, f_low = mid, f_mid
        else:
            high, f_high = mid, f_mid
    return mid


_limits: dict[tuple[Mix, float, float, int], float] = {}


def cusum_limit(mix: Mix, odds_ratio: float, arl0: float, guess: float = 0.0, cells: int = CUSUM_CELLS) -> float:
    """The risk-adjusted CUSUM limit h whose in-control ARL over ``mix`` is ``arl0``
    (``guess``: a previous limit of the chart, which brackets the search tightly; ``cells``:
    grid points of the chain, the cost growing with their cube)."""
    key = (mix, odds_ratio, arl0, cells)
    found = _limits.get(key)
    if found is None:
        low, high = (0.95 * guess, 1.05 * guess) if guess > 0 else (2.0, 4.0)
        if len(_limits) >= 4096:
            _limits.clear()
        found = _limits[key] = _solve(lambda h: cusum_arl(mix, odds_ratio, h, cells=cells), arl0, low, high)
    return found


@functools.lru_cache(maxsize=64)
def ewma_width(weight: float, arl0: float) -> float:
    """The EWMA limit width L (in standard deviations) whose in-control ARL is ``arl0``."""
    return _solve(lambda c: ewma_arl(weight, c), arl0, 2.5, 3.2)
