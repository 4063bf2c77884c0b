"""Fitting and checking the catalogue's risk models on a reference period (``rwe calibrate``).

Input is FINAL OutcomeObservations (an Avro file from ``rwe evaluate --format avro``,
or a range of the observations topic), with the case-mix covariates each carries.
Per indicator:

* **Fit** by maximum likelihood: logistic regression by Newton-Raphson (IRLS) for
  proportions, least squares for continuous indicators. Covariates are centred on
  their reference-period mean (the model's ``reference``), and a missing value takes
  that mean, the same rule :mod:`streams.catalogue.risk` applies at run time. A covariate with
  no variation in the period gets no coefficient.
* **Assess** a model (the catalogue's current one, and the refit) on the same data:
  n, events, observed/expected, c-statistic (area under the ROC curve, ties count
  one half), calibration-in-the-large (the intercept of a logistic model of the
  outcome with the model's linear predictor as offset: 0 is perfect) and calibration
  slope (the coefficient of the linear predictor in a logistic model of the outcome:
  1 is perfect, < 1 means predictions too extreme). Continuous indicators: O/E of
  the sums, mean(observed - expected) as calibration-in-the-large, the slope of
  observed on expected, and R^2.

A refit assessed on the data it was fitted on is calibrated by construction
(CITL 0, slope 1, O/E 1): those columns say something for the catalogue's model,
i.e. whether the published expected values still fit the period.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.catalogue.definitions import Indicator
from streams.catalogue.risk import IDENTITY, LOGIT, RiskModel

Array = npt.NDArray[np.float64]
MAX_ITERATIONS = 100
TOLERANCE = 1e-10
MIN_EVENTS = 10    # events (and non-events) a logistic fit needs; continuous: observations


class FitError(ValueError):
    """The data cannot support a model (too few events, no convergence)."""


@dataclass(frozen=True)
class Assessment:
    n: int
    events: int | None          # proportions only
    observed: float             # events, or sum of values
    expected: float
    observed_expected: float | None
    c_statistic: float | None   # proportions only
    calibration_in_the_large: float
    calibration_slope: float | None
    r_squared: float | None     # continuous only


@dataclass(frozen=True)
class Fit:
    model: RiskModel
    dropped: tuple[str, ...]    # declared covariates with no variation in the period
    iterations: int


# --------------------------------------------------------------------------- data
def design(indicator: Indicator, records: Sequence[Mapping[str, Any]]) -> tuple[Array, Array]:
    """(covariate values with NaN for missing, outcome or value) of FINAL records."""
    x = np.array([[r["covariates"].get(c, math.nan) for c in indicator.covariates] for r in records],
                 dtype=np.float64).reshape(len(records), len(indicator.covariates))
    target = "value" if indicator.kind == "continuous" else "outcome"
    y = np.array([float(r[target]) for r in records], dtype=np.float64)
    return x, y


def centred(x: Array, reference: Array) -> Array:
    """Covariates minus their reference value; a missing value becomes 0 (= the reference)."""
    out = x - reference
    out[np.isnan(out)] = 0.0
    return out


# --------------------------------------------------------------------------- fitting
def fit_logistic(x: Array, y: Array, offset: Array | None = None) -> tuple[Array, int]:
    """Maximum-likelihood logistic regression of ``y`` (0/1) on ``x`` (include an intercept
    column yourself) by Newton-Raphson; returns (coefficients, iterations).

    A step that lowers the likelihood is halved until it does not: a full Newton step
    from far away (a large offset) can overshoot to fitted risks of 0 or 1."""
    beta = np.zeros(x.shape[1])
    off = np.zeros(len(y)) if offset is None else offset
    eta = x @ beta + off
    loglik = _loglik(y, eta)
    for iteration in range(1, MAX_ITERATIONS + 1):
        p = _expit(eta)
        w = p * (1.0 - p)
        gradient = x.T @ (y - p)
        hessian = (x * w[:, None]).T @ x
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            raise FitError("the information matrix is singular (collinear covariates, or separation)") from None
        for _halving in range(40):
            candidate = x @ (beta + step) + off
            new_loglik = _loglik(y, candidate)
            if new_loglik >= loglik - 1e-12 * abs(loglik):
                break
            step = step / 2.0
        beta, eta, loglik = beta + step, candidate, new_loglik
        if not np.all(np.isfinite(beta)):
            break
        if np.max(np.abs(step)) < TOLERANCE:
            return beta, iteration
    # Separated data have no finite estimate: the coefficients grow without converging.
    raise FitError(f"no maximum-likelihood estimate after {MAX_ITERATIONS} Newton steps "
                   "(is the outcome separated by a covariate?)")


def _loglik(y: Array, eta: Array) -> float:
    # sum of y eta - log(1 + e^eta), stable for large |eta|
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def fit_linear(x: Array, y: Array) -> Array:
    """Least-squares coefficients of ``y`` on ``x`` (include an intercept column yourself)."""
    beta, _res, rank, _sv = np.linalg.lstsq(x, y, rcond=None)
    if rank < x.shape[1]:
        raise FitError("the design matrix is rank deficient (a covariate is collinear)")
    return np.asarray(beta, dtype=np.float64)


def fit(indicator: Indicator, records: Sequence[Mapping[str, Any]]) -> Fit:
    """The indicator's risk model fitted on FINAL ``records``."""
    x, y = design(indicator, records)
    continuous = indicator.kind == "continuous"
    if continuous and len(y) < MIN_EVENTS:
        raise FitError(f"{len(y)} observations, a fit needs at least {MIN_EVENTS}")
    if not continuous and min(y.sum(), len(y) - y.sum()) < MIN_EVENTS:
        raise FitError(f"{int(y.sum())} events in {len(y)}: a fit needs at least {MIN_EVENTS} with and "
                       "without the outcome")
    reference = np.array([np.nanmean(col) if np.any(~np.isnan(col)) else 0.0 for col in x.T])
    xc = centred(x, reference)
    varies = [i for i in range(xc.shape[1]) if np.ptp(xc[:, i]) > 0]
    names = tuple(indicator.covariates[i] for i in varies)
    dropped = tuple(c for i, c in enumerate(indicator.covariates) if i not in varies)
    design_matrix = np.column_stack([np.ones(len(y)), xc[:, varies]])
    if continuous:
        beta, iterations = fit_linear(design_matrix, y), 1
    else:
        beta, iterations = fit_logistic(design_matrix, y)
    model = RiskModel(IDENTITY if continuous else LOGIT, float(beta[0]), names,
                      tuple(float(b) for b in beta[1:]), tuple(float(reference[i]) for i in varies))
    return Fit(model, dropped, iterations)


# --------------------------------------------------------------------------- assessment
def predictions(model: RiskModel, indicator: Indicator, x: Array) -> Array:
    """The model's linear predictor for each row of ``x`` (columns: the indicator's covariates)."""
    cols = [indicator.covariates.index(c) for c in model.covariates]
    xc = centred(x[:, cols], np.array(model.reference))
    return np.asarray(model.intercept + xc @ np.array(model.coefficients), dtype=np.float64)


def c_statistic(y: Array, score: Array) -> float | None:
    """Area under the ROC curve: the chance a random event scores above a random
    non-event, ties counting one half (Mann-Whitney U / (n1 n0)); None without both."""
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return None
    ranks = midranks(score)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def midranks(values: Array) -> Array:
    """Ranks 1..n of ``values``, tied values sharing the mean of their ranks."""
    _unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    below = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.asarray((below + (counts + 1) / 2.0)[inverse], dtype=np.float64)


def assess(model: RiskModel, indicator: Indicator, records: Sequence[Mapping[str, Any]]) -> Assessment:
    """How well ``model`` predicts the FINAL ``records`` (see the module doc)."""
    x, y = design(indicator, records)
    eta = predictions(model, indicator, x)
    ones = np.ones(len(y))
    if model.link == IDENTITY:
        residual = y - eta
        slope = fit_linear(np.column_stack([ones, eta]), y)[1] if np.ptp(eta) > 0 else None
        total = float(((y - y.mean()) ** 2).sum())
        return Assessment(len(y), None, float(y.sum()), float(eta.sum()), _ratio(y.sum(), eta.sum()), None,
                          float(residual.mean()), None if slope is None else float(slope),
                          1.0 - float((residual ** 2).sum()) / total if total > 0 else None)
    p = _expit(eta)
    events = int(y.sum())
    citl = fit_logistic(ones[:, None], y, offset=eta)[0][0] if 0 < events < len(y) else math.nan
    slope = None
    if 0 < events < len(y) and np.ptp(eta) > 0:
        slope = float(fit_logistic(np.column_stack([ones, eta]), y)[0][1])
    return Assessment(len(y), events, float(events), float(p.sum()), _ratio(events, p.sum()), c_statistic(y, p),
                      float(citl), slope, None)


def _ratio(observed: float, expected: float) -> float | None:
    return float(observed / expected) if expected > 0 else None


def _expit(eta: Array) -> Array:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * eta)), dtype=np.float64)  # no overflow for large |eta|


# --------------------------------------------------------------------------- output
def toml_snippet(indicator: Indicator, result: Fit, assessment: Assessment, source: str) -> str:
    """The ``[indicator.<id>.risk]`` table of a fit, with a comment saying where it came from."""
    m = result.model
    events = f", {assessment.events} events" if assessment.events is not None else ""
    quality = (f"c-statistic {assessment.c_statistic:.3f}" if assessment.c_statistic is not None
               else f"R^2 {assessment.r_squared:.3f}" if assessment.r_squared is not None else "")
    lines = [f"# Fitted with rwe calibrate on {assessment.n} FINAL observations{events} of {source}"
             + (f"; {quality}" if quality else "") + "."]
    if result.dropped:
        lines.append(f"# No coefficient for {', '.join(result.dropped)}: no variation in the reference period.")
    lines += [f"[indicator.{indicator.id}.risk]", f"intercept = {_number(m.intercept)}",
              f"coefficients = {_inline(m.covariates, m.coefficients)}",
              f"reference = {_inline(m.covariates, m.reference)}"]
    return "\n".join(lines) + "\n"


def _inline(names: Iterable[str], values: Iterable[float]) -> str:
    body = ", ".join(f"{_key(n)} = {_number(v)}" for n, v in zip(names, values, strict=True))
    return f"{{ {body} }}" if body else "{}"


def _key(name: str) -> str:
    return name if name.replace("_", "").isalnum() else f'"{name}"'


def _number(value: float) -> str:
    text = f"{value:.6g}"
    return text if any(ch in text for ch in ".en") else f"{text}.0"
