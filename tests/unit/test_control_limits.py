"""Control limits: ARLs against R's spc (values from tests/reference/arl.R) and against simulation."""

from __future__ import annotations

import numpy as np
import pytest

from streams.monitoring.charts import run_lengths
from streams.monitoring.control_limits import RiskMix, cusum_arl, cusum_limit, ewma_arl, ewma_width, normal_cusum_arl

# Rscript tests/reference/arl.R (spc 0.6.7), output pasted:
XCUSUM = [  # k, h, mu, xcusum.arl
    (0.5, 4.0, 0.0, 335.367578), (0.5, 5.0, 0.0, 930.887012), (0.5, 4.0, 1.0, 8.383202),
    (0.25, 8.0, 0.0, 736.787747), (1.0, 2.5, 0.0, 716.003879)]
XEWMA = [  # lambda, c, mu, xewma.arl(limits = "fix"), xewma.arl(limits = "vacl")
    (0.1, 2.7, 0.0, 368.993734, 356.095097), (0.1, 2.7, 0.5, 28.190540, 25.327552),
    (0.2, 2.86, 0.0, 371.103304, 365.855995), (0.05, 2.6, 0.0, 481.900734, 451.528328)]


@pytest.mark.parametrize(("k", "h", "mu", "reference"), XCUSUM)
def test_normal_cusum_arl_matches_spc_xcusum_arl(k: float, h: float, mu: float, reference: float) -> None:
    assert normal_cusum_arl(k, h, mu) == pytest.approx(reference, rel=1e-3)


@pytest.mark.parametrize(("lam", "c", "mu", "fixed", "varying"), XEWMA)
def test_ewma_arl_matches_spc_xewma_arl(lam: float, c: float, mu: float, fixed: float, varying: float) -> None:
    assert ewma_arl(lam, c, mu, varying=False) == pytest.approx(fixed, rel=3e-3)
    assert ewma_arl(lam, c, mu) == pytest.approx(varying, rel=3e-3)


def test_ewma_width_gives_the_target_arl() -> None:
    width = ewma_width(0.1, 500.0)
    assert ewma_arl(0.1, width) == pytest.approx(500.0, rel=2e-3)
    assert 2.7 < width < 3.0  # spc::xewma.crit(0.1, 500, sided = "two") is 2.81 for fixed limits


@pytest.mark.parametrize(("risks", "odds_ratio"), [((0.1,), 2.0), ((0.1,), 0.5),
                                                   ((0.03, 0.03, 0.03, 0.09, 0.09, 0.09, 0.09, 0.25, 0.25, 0.55), 2.0)])
def test_calibrated_cusum_limit_holds_its_arl_in_simulation(risks: tuple[float, ...], odds_ratio: float) -> None:
    """Monte Carlo run lengths of charts at the calibrated limit (constant risk is the
    non-risk-adjusted Bernoulli CUSUM) have a mean within 4 standard errors (+1 % for
    the chain's discretisation) of the target ARL0."""
    mix = RiskMix()
    for r in risks:
        mix.add(r)
    limit = cusum_limit(mix.key(), odds_ratio, 400.0)
    lengths = run_lengths(np.array(risks), odds_ratio, limit, chains=6000, max_steps=20_000,
                          rng=np.random.default_rng(5))
    assert (lengths < 20_000).all()
    se = lengths.std() / np.sqrt(len(lengths))
    assert abs(lengths.mean() - 400.0) < 4 * se + 4.0, (lengths.mean(), se)


def test_out_of_control_arl_of_a_doubling_is_short() -> None:
    mix = ((0.1, 1.0),)
    h = cusum_limit(mix, 2.0, 1000.0)
    out = cusum_arl(mix, 2.0, h, true_odds_ratio=2.0)
    assert 50 < out < 120  # about 80 patients at a 10 % risk
    assert cusum_arl(mix, 2.0, h) == pytest.approx(1000.0, rel=2e-3)


def test_risk_mix_histogram_and_cache_key() -> None:
    mix = RiskMix()
    for r in (0.001, 0.5, 0.999, 0.5):
        mix.add(r)
    assert mix.total == 4
    assert mix.support() == ((0.001, 0.25), (0.5, 0.5), (0.999, 0.25))
    assert RiskMix(mix.state()).support() == mix.support()
    assert sum(w for _r, w in mix.key()) == pytest.approx(1.0)
