"""Fitting and assessing risk models (``rwe calibrate``): known coefficients, R's glm, hand-computed c."""

from __future__ import annotations

import csv
import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.catalogue.definitions import Indicator, load_catalogue
from streams.catalogue.risk import LOGIT, RiskModel, parse_model
from streams.cli.calibrate import final_observations
from streams.monitoring.calibration import FitError, assess, c_statistic, fit, fit_logistic, midranks, toml_snippet

CATALOGUE = load_catalogue()
REFERENCE = Path(__file__).resolve().parents[1] / "reference"
COVARIATES = ("age", "male", "lab:creatinine")
BINARY: Indicator = dataclasses.replace(CATALOGUE.indicators["hf_mortality_30d"], covariates=COVARIATES)
CONTINUOUS: Indicator = dataclasses.replace(CATALOGUE.indicators["hf_length_of_stay"], covariates=COVARIATES)


def record(covariates: dict[str, float], outcome: int | None = None, value: float | None = None,
           status: str = "FINAL", oid: str = "o", indicator: str = "hf_mortality_30d",
           index_time: int = 0) -> dict[str, Any]:
    return {"observation_id": oid, "indicator": indicator, "status": status, "index_time": index_time,
            "outcome": outcome, "value": value, "covariates": covariates}


def r_data() -> list[dict[str, Any]]:
    """The data set tests/reference/calibration.R wrote and fitted."""
    with (REFERENCE / "calibration_data.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for i, row in enumerate(rows):
        cov = {"age": float(row["age"]), "male": float(row["male"])}
        if row["lab"]:
            cov["lab:creatinine"] = float(row["lab"])
        out.append(record(cov, outcome=int(row["y"]), value=float(row["los"]), oid=str(i)))
    return out


def synthetic(n: int, seed: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Binary outcomes from a known model on centred covariates; returns (records, true beta)."""
    rng = np.random.default_rng(seed)
    age = rng.normal(70, 10, n)
    male = rng.binomial(1, 0.5, n).astype(float)
    lab = rng.lognormal(np.log(100), 0.3, n)
    truth = np.array([-2.0, 0.05, 0.7, 0.01])
    eta = truth[0] + truth[1] * (age - 70) + truth[2] * (male - 0.5) + truth[3] * (lab - 100)
    y = rng.random(n) < 1 / (1 + np.exp(-eta))
    records = [record({"age": a, "male": m, "lab:creatinine": v}, outcome=int(o), oid=str(i))
               for i, (a, m, v, o) in enumerate(zip(age, male, lab, y, strict=True))]
    return records, truth


def test_logistic_fit_recovers_known_coefficients() -> None:
    records, truth = synthetic(40_000, seed=11)
    result = fit(BINARY, records)
    m = result.model
    assert m.link == LOGIT and m.covariates == COVARIATES
    # Centred on the sample means, so the intercept is close to (not equal to) the true one.
    coefficients = np.array(m.coefficients)
    assert coefficients == pytest.approx(truth[1:], rel=0.1, abs=0.005)
    assert np.array(m.reference) == pytest.approx([70, 0.5, 100 * math.exp(0.045)], rel=0.01)
    assert m.intercept == pytest.approx(truth[0], abs=0.05)
    assert result.iterations < 15


def test_linear_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(5)
    age = rng.normal(70, 10, 5000)
    records = [record({"age": a}, value=3.0 + 0.2 * (a - 70) + rng.normal(0, 0.5), oid=str(i),
                      indicator="hf_length_of_stay") for i, a in enumerate(age)]
    m = fit(dataclasses.replace(CONTINUOUS, covariates=("age",)), records).model
    assert m.link == "identity"
    assert m.intercept == pytest.approx(3.0 + 0.2 * (age.mean() - 70), abs=0.02)
    assert m.coefficients[0] == pytest.approx(0.2, abs=0.005)


def test_fits_match_r() -> None:
    # Values printed by tests/reference/calibration.R (R's glm and lm on the same data).
    data = r_data()
    logistic = fit(BINARY, data).model
    assert logistic.reference == pytest.approx((70.763, 0.5425, 106.064611111111), rel=1e-12)
    assert (logistic.intercept, *logistic.coefficients) == pytest.approx(
        (-1.31772770605856, 0.0543115958824477, 0.364101320565125, 0.00677344421374772), rel=1e-8)
    # The R script's lm leaves lab out: compare the linear fit on age and male.
    linear = fit(dataclasses.replace(CONTINUOUS, covariates=("age", "male")), data).model
    assert (linear.intercept, *linear.coefficients) == pytest.approx(
        (5.6277175, 0.047013500586545, 0.67386844929903), rel=1e-10)


def test_assessment_of_a_fixed_model_matches_r() -> None:
    reference = (70.763, 0.5425, 106.064611111111)
    model = RiskModel(LOGIT, -1.2, COVARIATES, (0.06, 0.31, 0.0), reference)
    a = assess(model, BINARY, r_data())
    assert (a.n, a.events) == (400, 91)
    assert a.expected == pytest.approx(98.5545413528921, rel=1e-10)
    assert a.observed_expected == pytest.approx(0.923346593173807, rel=1e-10)
    assert a.c_statistic == pytest.approx(0.643657313560226, rel=1e-12)
    assert a.calibration_in_the_large == pytest.approx(-0.111028437587359, rel=1e-8)
    assert a.calibration_slope == pytest.approx(0.906114070048723, rel=1e-8)


def test_a_refit_is_calibrated_on_its_own_data() -> None:
    data = r_data()
    a = assess(fit(BINARY, data).model, BINARY, data)
    assert a.observed_expected == pytest.approx(1.0, abs=1e-9)
    assert a.calibration_in_the_large == pytest.approx(0.0, abs=1e-9)
    assert a.calibration_slope == pytest.approx(1.0, abs=1e-8)


def test_c_statistic_by_hand() -> None:
    # Event scores 0.9, 0.4, 0.35 against non-event scores 0.1, 0.4: of 6 pairs the event
    # is higher in 4 and tied in 1, so c = 4.5 / 6.
    y = np.array([1, 0, 1, 0, 1], dtype=float)
    assert c_statistic(y, np.array([0.9, 0.1, 0.4, 0.4, 0.35])) == 0.75
    assert c_statistic(y, np.array([0.5] * 5)) == 0.5
    assert c_statistic(np.ones(3), np.array([0.1, 0.2, 0.3])) is None
    assert list(midranks(np.array([3.0, 1.0, 3.0, 2.0]))) == [3.5, 1.0, 3.5, 2.0]


def test_too_few_events_and_separation_are_fit_errors() -> None:
    few = [record({"age": 60.0 + i}, outcome=int(i < 3), oid=str(i)) for i in range(200)]
    with pytest.raises(FitError, match="3 events in 200"):
        fit(BINARY, few)
    separated = [record({"age": float(i)}, outcome=int(i >= 50), oid=str(i)) for i in range(100)]
    with pytest.raises(FitError, match=r"separated|singular"):
        fit(BINARY, separated)


def test_a_covariate_without_variation_gets_no_coefficient() -> None:
    records, _truth = synthetic(2000, seed=3)
    for r in records:
        r["covariates"]["male"] = 1.0
    result = fit(BINARY, records)
    assert result.dropped == ("male",) and result.model.covariates == ("age", "lab:creatinine")


def test_the_toml_snippet_loads_back_as_the_same_model() -> None:
    records, _truth = synthetic(3000, seed=9)
    result = fit(BINARY, records)
    text = toml_snippet(BINARY, result, assess(result.model, BINARY, records), "a test")
    assert text.startswith("# Fitted with rwe calibrate on 3000 FINAL observations")
    table = tomllib.loads(text)["indicator"]["hf_mortality_30d"]["risk"]
    loaded = parse_model(table, False, COVARIATES, lambda f, p: ValueError(f"{f}: {p}"))
    assert loaded.intercept == pytest.approx(result.model.intercept, rel=1e-5)
    assert loaded.coefficients == pytest.approx(result.model.coefficients, rel=1e-5)
    assert loaded.reference == pytest.approx(result.model.reference, rel=1e-5)


def test_only_the_latest_final_record_of_each_observation_counts() -> None:
    records = [
        record({}, status="OPEN", oid="a", index_time=5),
        record({}, outcome=1, oid="a", index_time=5),                  # a: OPEN then FINAL
        record({}, outcome=0, oid="b", index_time=6),
        record({}, status="EXCLUDED", oid="b", index_time=6),          # b: superseded later
        record({}, outcome=0, oid="c", index_time=50),                 # c: outside the period
        record({}, outcome=0, oid="d", index_time=7, indicator="ami_mortality_30d"),
    ]
    chosen = final_observations(records, {"hf_mortality_30d", "ami_mortality_30d"}, start=0, end=50)
    assert {k: [r["observation_id"] for r in v] for k, v in chosen.items()} == {
        "hf_mortality_30d": ["a"], "ami_mortality_30d": ["d"]}


def test_newton_uses_the_offset() -> None:
    # With the linear predictor as offset, the intercept is the log of O/E on the odds scale.
    y = np.array([1.0, 0.0, 0.0, 0.0])
    beta, _ = fit_logistic(np.ones((4, 1)), y, offset=np.zeros(4))
    assert beta[0] == pytest.approx(math.log(1 / 3))
    beta, _ = fit_logistic(np.ones((4, 1)), y, offset=np.full(4, math.log(1 / 3)))
    assert beta[0] == pytest.approx(0.0, abs=1e-12)
    # Far from the data (every offset says 1 in 3000, a third have the outcome) a full Newton
    # step overshoots to risks of 0 or 1; step halving still finds the estimate.
    y = np.array([1.0, 0.0, 0.0] * 100)
    beta, _ = fit_logistic(np.ones((300, 1)), y, offset=np.full(300, -8.0))
    assert beta[0] == pytest.approx(8.0 + math.log(0.5), abs=1e-9)
