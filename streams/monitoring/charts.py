# mypyc: compiled (the per-event path: setup.py)
"""Sequential monitors of outcome indicators (pure logic; the monitoring issue builds on it).

- Risk-adjusted Bernoulli CUSUM (Steiner, Cook, Farewell, Treasure, Biostatistics 2000):
  S_t = max(0, S_{t-1} + W_t), W_t = y_t ln(R_A) - ln(1 - p_t + R_A p_t), with p_t the
  patient's expected risk. R_A = 2 watches for a doubling of the odds, R_A = 0.5 (run as
  a second chart) for an improvement. It signals when S_t >= h.
- The limit h comes from :mod:`streams.monitoring.control_limits` (the chart's Markov chain over
  the patient mix, to an in-control average run length); :func:`run_lengths` simulates
  charts to check it.
- VLAD: the running sum of expected minus observed (lives saved above expectation).
- EWMA for continuous indicators: Z_t = lambda x_t + (1 - lambda) Z_{t-1}, limits
  +/- L sigma sqrt(lambda / (2 - lambda) (1 - (1 - lambda)^(2t))) around the target.
- Funnel-plot limits around a network target p0 for a site of volume n:
  p0 +/- z sqrt(phi p0 (1 - p0) / n), phi the overdispersion factor (1: none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

Z95 = 1.959963984540054
Z998 = 3.090232306167813  # two-sided 99.8 %


def cusum_weight(outcome: int, expected: float, odds_ratio: float) -> float:
    """W_t of the risk-adjusted Bernoulli CUSUM for one patient."""
    return outcome * math.log(odds_ratio) - math.log(1.0 - expected + odds_ratio * expected)


@dataclass
class RiskAdjustedCusum:
    """One CUSUM chart: ``odds_ratio`` > 1 watches for deterioration, < 1 for improvement."""

    odds_ratio: float
    limit: float
    statistic: float = 0.0
    observations: int = 0

    def update(self, outcome: int, expected: float) -> float:
        if not 0.0 < expected < 1.0:
            raise ValueError(f"expected risk must lie in (0, 1), not {expected}")
        self.statistic = max(0.0, self.statistic + cusum_weight(outcome, expected, self.odds_ratio))
        self.observations += 1
        return self.statistic

    @property
    def signalled(self) -> bool:
        return self.statistic >= self.limit

    def reset(self) -> None:
        """Restart the chart (after a signal has been acted on)."""
        self.statistic = 0.0


@dataclass
class Vlad:
    """Variable life-adjusted display: cumulative expected minus observed outcomes."""

    value: float = 0.0

    def update(self, outcome: int, expected: float) -> float:
        self.value += expected - outcome
        return self.value


@dataclass
class Ewma:
    """EWMA chart of a continuous indicator around ``target`` with in-control SD ``sigma``."""

    target: float
    sigma: float
    weight: float = 0.1   # lambda, 0.05-0.2
    width: float = 3.0    # L
    value: float = field(init=False)
    observations: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.weight <= 1.0:
            raise ValueError("EWMA weight (lambda) must lie in (0, 1]")
        self.value = self.target

    def update(self, x: float) -> tuple[float, float, float]:
        """(Z_t, lower limit, upper limit) after observing ``x``."""
        lam = self.weight
        self.value = lam * x + (1.0 - lam) * self.value
        self.observations += 1
        half = self.width * self.sigma * math.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * self.observations)))
        return self.value, self.target - half, self.target + half

    @property
    def signalled(self) -> bool:
        half = self.width * self.sigma * math.sqrt(
            self.weight / (2.0 - self.weight) * (1.0 - (1.0 - self.weight) ** (2 * max(self.observations, 1))))
        return abs(self.value - self.target) > half


def funnel_limits(target: float, volume: int, z: float = Z95, overdispersion: float = 1.0) -> tuple[float, float]:
    """Funnel-plot control limits for a proportion at ``volume`` index events."""
    if volume <= 0:
        return 0.0, 1.0
    half = z * math.sqrt(overdispersion * target * (1.0 - target) / volume)
    return max(0.0, target - half), min(1.0, target + half)


def run_lengths(risks: np.ndarray, odds_ratio: float, limit: float, chains: int, max_steps: int,
                rng: np.random.Generator, true_odds_ratio: float = 1.0) -> np.ndarray:
    """Run lengths of ``chains`` CUSUM charts on patients drawn from ``risks``, with outcomes
    drawn at the expected risk times ``true_odds_ratio`` in odds (1: in control). Charts that
    have not signalled after ``max_steps`` report ``max_steps``."""
    s = np.zeros(chains)
    length = np.full(chains, max_steps, dtype=np.int64)
    alive = np.ones(chains, dtype=bool)
    log_ra = math.log(odds_ratio)
    for step in range(1, max_steps + 1):
        p = rng.choice(risks, size=chains)
        odds = p / (1 - p) * true_odds_ratio
        y = rng.random(chains) < odds / (1 + odds)
        s = np.maximum(0.0, s + y * log_ra - np.log(1.0 - p + odds_ratio * p))
        fired = alive & (s >= limit)
        length[fired] = step
        alive &= ~fired
        if not alive.any():
            break
    return length


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _stdev(values: list[float]) -> float:
    """Sample SD in floats (statistics.stdev computes in exact fractions: ~50x slower, and
    feed health judges every site's every hour)."""
    m = _mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class EarsResult:
    """EARS upper bounds and alarms for time points ``start`` .. the end (0-based)."""

    start: int
    upperbound: list[float]
    alarm: list[bool]


def ears(counts: list[float], method: str = "C1", baseline: int = 7, alpha: float | None = None,
         min_sigma: float = 0.0) -> EarsResult:
    """CDC EARS C1/C2/C3 on a count series, as R's ``surveillance::earsC`` computes them.

    C1: the previous ``baseline`` counts give mean and SD; C2: the same, lagged by 2;
    C3: alarms when the C2 excesses (z - 1, floored at 0) of the two previous time points
    add up past z_alpha. alpha defaults to 0.001 (C1, C2) and 0.025 (C3).
    """
    if baseline < 3:
        raise ValueError("EARS needs a baseline of at least 3")
    if method not in ("C1", "C2", "C3"):
        raise ValueError(f"method must be C1, C2 or C3, not {method!r}")
    z_alpha = NormalDist().inv_cdf(1 - (alpha if alpha is not None else (0.025 if method == "C3" else 0.001)))
    lag = 0 if method == "C1" else 2

    def reference(t: int) -> list[float]:
        return counts[t - lag - baseline:t - lag]

    def sigma(values: list[float]) -> float:
        return max(_stdev(values), min_sigma)

    first = baseline + {"C1": 0, "C2": 2, "C3": 4}[method]
    bounds: list[float] = []
    alarms: list[bool] = []
    for t in range(first, len(counts)):
        if method == "C3":
            excess = 0.0
            for u in (t - 2, t - 1):
                ref = reference(u)
                excess += max(0.0, (counts[u] - _mean(ref)) / sigma(ref) - 1.0)
            bound = max(0.0, counts[t] + sigma(reference(t)) * (z_alpha - excess))
        else:
            ref = reference(t)
            bound = _mean(ref) + z_alpha * sigma(ref)
        bounds.append(bound)
        alarms.append(counts[t] > bound)
    return EarsResult(first, bounds, alarms)
