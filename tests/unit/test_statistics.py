"""Wilson interval, exact sums, mean, median and SD."""

from __future__ import annotations

import statistics as stdlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.indicators.statistics import (
    Z95,
    exact,
    exact_total,
    mean,
    mean_of_sum,
    median,
    proportion,
    sample_sd,
    sd_of_sums,
    to_float,
    wilson_interval,
)

# Reference values, computed once with statsmodels 0.15.0 in a throw-away venv:
#   python -m venv /tmp/statsref && /tmp/statsref/bin/pip install statsmodels
#   /tmp/statsref/bin/python -c "from statsmodels.stats.proportion import proportion_confint as c;
#       [print(x, n, *map(float, c(x, n, alpha=0.05, method='wilson'))) for x, n in
#        [(0,10),(1,10),(5,10),(10,10),(50,100),(3,7),(1,1)]]"
STATSMODELS_WILSON = [
    (0, 10, 0.0, 0.27753279986288926),
    (1, 10, 0.017876213095072924, 0.40415002679523854),
    (5, 10, 0.23659309051256394, 0.7634069094874361),
    (10, 10, 0.7224672001371106, 1.0),
    (50, 100, 0.4038315303659956, 0.5961684696340044),
    (3, 7, 0.15821985525146964, 0.7495416354723428),
    (1, 1, 0.2065493143772374, 1.0),
]


@pytest.mark.parametrize(("x", "n", "low", "high"), STATSMODELS_WILSON)
def test_wilson_matches_statsmodels(x: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(x, n)
    assert got is not None
    assert got[0] == pytest.approx(low, rel=1e-12, abs=1e-15)
    assert got[1] == pytest.approx(high, rel=1e-12, abs=1e-15)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 10)[0] == 0.0  # type: ignore[index]
    assert wilson_interval(10, 10)[1] == 1.0  # type: ignore[index]
    with pytest.raises(ValueError, match="outside"):
        wilson_interval(11, 10)
    assert Z95 == 1.959963984540054
    assert proportion(0, 0) is None
    assert proportion(1, 4) == 0.25


@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
@settings(max_examples=200)
def test_wilson_contains_p_and_is_symmetric(xn: tuple[int, int]) -> None:
    x, n = xn
    low, high = wilson_interval(x, n)  # type: ignore[misc]
    assert 0.0 <= low <= x / n <= high <= 1.0
    mirror_low, mirror_high = wilson_interval(n - x, n)  # type: ignore[misc]
    assert low == pytest.approx(1 - mirror_high, abs=1e-12)
    assert high == pytest.approx(1 - mirror_low, abs=1e-12)


def test_exact_sums_do_not_drift() -> None:
    values = [0.1] * 10 + [1e16, 1.0, -1e16]
    total = exact_total(values)
    assert to_float(total) == 2.0  # naive float summation gives 0.0 or 1.0 here
    # Removing values in any order returns exactly to zero: no drift from retractions.
    for v in reversed(values):
        total -= exact(v)
    assert total == 0
    assert to_float(exact(5e-324)) == 5e-324  # even the smallest subnormal is exact


def test_mean_median_sd() -> None:
    assert mean([]) is None and median([]) is None and sample_sd([1.0]) is None
    assert mean([1.0, 2.0, 4.0]) == pytest.approx(7 / 3)
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert sample_sd([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx(2.138089935299395)
    # No catastrophic cancellation around a large offset.
    assert sample_sd([1e9 + 1, 1e9 + 2, 1e9 + 3]) == 1.0
    assert sample_sd([3.3, 3.3, 3.3]) == 0.0
    assert mean_of_sum(0, 0) is None and sd_of_sums(0, 0, 1) is None


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=50))
@settings(max_examples=150)
def test_agree_with_the_standard_library(values: list[float]) -> None:
    assert mean(values) == pytest.approx(stdlib.fmean(values), rel=1e-12, abs=1e-9)
    assert median(values) == pytest.approx(stdlib.median(values), rel=1e-12, abs=1e-9)
    assert sample_sd(values) == pytest.approx(stdlib.stdev(values), rel=1e-9, abs=1e-6)
    # Order never matters: the sums are exact.
    assert mean(values) == mean(values[::-1]) and sample_sd(values) == sample_sd(sorted(values))
