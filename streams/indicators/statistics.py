# mypyc: compiled (the per-event path: setup.py)
"""Estimates published with indicator snapshots: Wilson interval, mean, median, SD.

Pure functions, no Kafka. Sums of floats are kept *exactly* as integers: a finite
double is m x 2^e with e >= -1074, so ``x * 2**1074`` is an integer, and sums and
differences of those integers never round. Running totals can then add and remove
observations (upserts, retractions, eviction) forever without drift, and a total
kept incrementally equals one recomputed from scratch bit for bit, whatever the
order: a restart or a replay cannot move a published mean in its last digit.
Converting back divides two integers, which Python rounds correctly, so a mean is
the correctly rounded quotient of the exact sum and n (better than ``fsum``/n).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Z95 = 1.959963984540054
"""Two-sided 95 % standard normal quantile."""

SCALE_BITS = 1074
"""Exact sums are integers in units of 2^-1074 (the smallest subnormal double)."""


def exact(x: float) -> int:
    """``x`` as an exact integer in units of 2^-1074 (``x`` finite)."""
    n, d = x.as_integer_ratio()
    return n << (SCALE_BITS - (d.bit_length() - 1))


def exact_square(x: float) -> int:
    """``x**2`` exactly, in units of 2^-2148 (the square of :func:`exact`'s unit)."""
    e = exact(x)
    return e * e


def exact_total(values: Iterable[float]) -> int:
    return sum(exact(v) for v in values)


def to_float(total: int) -> float:
    """An exact sum back to the nearest double."""
    return total / (1 << SCALE_BITS)


def mean_of_sum(total: int, n: int) -> float | None:
    """Mean from an exact sum of ``n`` values (None when n = 0), correctly rounded."""
    if n <= 0:
        return None
    return total / (n << SCALE_BITS)


def sd_of_sums(total: int, total_sq: int, n: int) -> float | None:
    """Sample standard deviation (ddof = 1) from exact sums; None when n < 2.

    var = (n * sum(x^2) - sum(x)^2) / (n (n - 1)), all in exact integers, so there is
    no catastrophic cancellation: the variance is the correctly rounded double.
    """
    if n < 2:
        return None
    numerator = n * total_sq - total * total
    if numerator <= 0:
        return 0.0
    return math.sqrt(numerator / ((n * (n - 1)) << (2 * SCALE_BITS)))


def mean(values: Sequence[float]) -> float | None:
    return mean_of_sum(exact_total(values), len(values))


def sample_sd(values: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof = 1); None with fewer than two values."""
    return sd_of_sums(exact_total(values), sum(exact_square(v) for v in values), len(values))


def median(values: Iterable[float]) -> float | None:
    """Median (mean of the two middle values for an even count); None when empty."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    mid = n // 2
    if n % 2:
        return ordered[mid]
    return mean_of_sum(exact(ordered[mid - 1]) + exact(ordered[mid]), 2)


def proportion(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def wilson_interval(numerator: int, denominator: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for ``numerator`` successes in ``denominator`` trials.

    (p + z^2/2n +/- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n); None when n = 0.
    The bounds are clamped to [0, 1] (rounding can leave them 1 ulp outside) and
    are exactly 0 at x = 0 and exactly 1 at x = n.
    """
    n = denominator
    if n <= 0:
        return None
    if not 0 <= numerator <= n:
        raise ValueError(f"numerator {numerator} outside 0..{n}")
    p = numerator / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    scale = 1 + z2 / n
    low = 0.0 if numerator == 0 else max(0.0, (centre - half) / scale)
    high = 1.0 if numerator == n else min(1.0, (centre + half) / scale)
    return low, high
