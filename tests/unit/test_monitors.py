"""Sequential monitors: hand-checked values and simulated behaviour."""

from __future__ import annotations

import math

import pytest

from streams.monitoring.charts import Ewma, RiskAdjustedCusum, Vlad, cusum_weight, funnel_limits


def test_cusum_weights_by_hand() -> None:
    # y=1, p=0.1, R_A=2: ln 2 - ln(1.1)
    assert cusum_weight(1, 0.1, 2.0) == pytest.approx(math.log(2) - math.log(1.1))
    assert cusum_weight(0, 0.1, 2.0) == pytest.approx(-math.log(1.1))
    # the improvement chart accumulates on survivals
    assert cusum_weight(0, 0.2, 0.5) == pytest.approx(-math.log(0.9)) and cusum_weight(0, 0.2, 0.5) > 0


def test_cusum_never_goes_below_zero_and_signals_at_the_limit() -> None:
    chart = RiskAdjustedCusum(odds_ratio=2.0, limit=1.0)
    for _ in range(20):
        chart.update(0, 0.1)
    assert chart.statistic == 0.0 and not chart.signalled
    chart.update(1, 0.1)
    chart.update(1, 0.1)
    assert chart.statistic == pytest.approx(2 * cusum_weight(1, 0.1, 2.0)) and chart.signalled
    chart.reset()
    assert chart.statistic == 0.0
    with pytest.raises(ValueError, match="expected risk"):
        chart.update(1, 1.0)


def test_vlad_is_expected_minus_observed() -> None:
    vlad = Vlad()
    for y, p in [(0, 0.1), (1, 0.2), (0, 0.3)]:
        vlad.update(y, p)
    assert vlad.value == pytest.approx(0.6 - 1)


def test_ewma_limits_by_hand() -> None:
    chart = Ewma(target=0.0, sigma=1.0, weight=0.1, width=3.0)
    z, low, high = chart.update(1.0)
    # t = 1: 3 sqrt(0.1 / 1.9 (1 - 0.81)) = 3 x 0.1
    assert (z, low, high) == (pytest.approx(0.1), pytest.approx(-0.3), pytest.approx(0.3))
    for _ in range(200):
        chart.update(0.0)
    assert chart.update(0.0)[2] == pytest.approx(3 * math.sqrt(0.1 / 1.9), rel=1e-6)  # steady state
    chart = Ewma(target=10.0, sigma=2.0)
    for _ in range(30):
        chart.update(13.0)
    assert chart.signalled


def test_funnel_limits_narrow_with_volume() -> None:
    wide, narrow = funnel_limits(0.1, 20), funnel_limits(0.1, 2000)
    assert wide[0] == 0.0 and wide[1] > narrow[1] > 0.1 > narrow[0]
    assert narrow[1] == pytest.approx(0.1 + 1.959963984540054 * math.sqrt(0.09 / 2000))
    assert funnel_limits(0.1, 2000, overdispersion=4.0)[1] - 0.1 == pytest.approx(2 * (narrow[1] - 0.1))


# Computed once with R's surveillance 1.20.3: Rscript tests/reference/ears.R
EARS_COUNTS = [3, 5, 4, 6, 2, 5, 4, 3, 6, 5, 4, 12, 5, 4, 3, 15, 14, 4, 5, 6, 5, 4, 20, 3]
EARS_R = {
    "C1": ([8.2997925802, 8.2997925802, 8.9087836546, 9.1005635289, 8.2997925802, 14.8175673093, 14.8175673093,
            14.8175673093, 14.8175673093, 21.2887341191, 24.4391156272, 24.4391156272, 22.8421873571,
            22.8102784223, 22.6574024973, 22.3763122739, 27.5606309638],
           [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
    "C2": ([8.2997925802, 8.2997925802, 8.9087836546, 9.1005635289, 8.2997925802, 14.8175673093, 14.8175673093,
            14.8175673093, 14.8175673093, 21.2887341191, 24.4391156272, 24.4391156272, 22.8421873571,
            22.8102784223, 22.6574024973],
           [0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
    "C3": ([14.9321580268, 1.6791242694, 1.0452291633, 8.8643160535, 20.8643160535, 13.4277975911, 0.0,
            5.6677165629, 16.3358183294, 15.3358183294, 13.9572196368, 29.8463751487, 5.1147751088],
           [0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]),
}


@pytest.mark.parametrize("method", ["C1", "C2", "C3"])
def test_ears_matches_surveillance_earsC(method: str) -> None:
    from streams.monitoring.charts import ears

    result = ears(EARS_COUNTS, method)
    bounds, alarms = EARS_R[method]
    assert result.upperbound == pytest.approx(bounds, abs=1e-9)
    assert [int(a) for a in result.alarm] == alarms
    assert len(EARS_COUNTS) - result.start == len(bounds)
