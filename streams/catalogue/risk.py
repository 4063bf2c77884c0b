"""Risk adjustment: an indicator's expected outcome for one observation's case mix.

Each indicator may carry a model in the catalogue (``[indicator.<id>.risk]``):

    linear predictor = intercept + sum over covariates of coefficient x (value - reference)

A proportion's expected risk is the logistic of the linear predictor; a continuous
indicator's expected value is the linear predictor itself. Coefficients are centred on
a reference value per covariate (the reference period's mean, as ``rwe calibrate``
writes it), which makes the run-time rule for a **missing covariate** simple: it takes
its reference value, i.e. contributes nothing, and the patient is scored as an average
patient on that variable. A covariate the indicator declares but the model leaves out
has coefficient 0.

Pure and cheap: a model is parsed once into tuples, and scoring an observation is one
pass over them (this runs for every published observation in the ascertain stage and
in the batch evaluator, which therefore publish the same ``expected``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

LOGIT, IDENTITY = "logit", "identity"
MODEL_KEYS = frozenset({"intercept", "coefficients", "reference"})
EXPECTED_STATUSES = frozenset({"OPEN", "FINAL"})  # an EXCLUDED observation has no expected outcome


@dataclass(frozen=True)
class RiskModel:
    link: str                          # LOGIT (proportions) or IDENTITY (continuous)
    intercept: float
    covariates: tuple[str, ...]        # in catalogue order
    coefficients: tuple[float, ...]
    reference: tuple[float, ...]

    def linear_predictor(self, values: Mapping[str, float]) -> float:
        eta = self.intercept
        for name, beta, ref in zip(self.covariates, self.coefficients, self.reference, strict=True):
            x = values.get(name)
            if x is not None:
                eta += beta * (x - ref)
        return eta

    def expected(self, values: Mapping[str, float]) -> float:
        """Expected risk (logit link) or value (identity link) for these covariate values."""
        eta = self.linear_predictor(values)
        if self.link == IDENTITY:
            return eta
        # numerically safe logistic for large |eta|
        if eta >= 0:
            return 1.0 / (1.0 + math.exp(-eta))
        z = math.exp(eta)
        return z / (1.0 + z)

    def describe(self) -> dict[str, Any]:
        return {"link": self.link, "intercept": self.intercept,
                "coefficients": dict(zip(self.covariates, self.coefficients, strict=True)),
                "reference": dict(zip(self.covariates, self.reference, strict=True))}


def expected_for(model: RiskModel | None, status: str, covariates: Mapping[str, float]) -> float | None:
    """The ``expected`` field of an OutcomeObservation: None without a model or when EXCLUDED."""
    if model is None or status not in EXPECTED_STATUSES:
        return None
    return model.expected(covariates)


def parse_model(raw: Any, continuous: bool, declared: tuple[str, ...],
                fail: Callable[[str, str], Exception]) -> RiskModel:
    """A catalogue ``risk`` table as a :class:`RiskModel`; ``fail(field, problem)`` makes the error."""
    if not isinstance(raw, dict):
        raise fail("risk", "must be a table with intercept, coefficients and reference")
    unknown = set(raw) - MODEL_KEYS
    if unknown:
        raise fail(f"risk.{sorted(unknown)[0]}", "unknown field")
    if "intercept" not in raw:
        raise fail("risk.intercept", "required")
    intercept = raw["intercept"]
    if not _finite(intercept):
        raise fail("risk.intercept", "must be a finite number")
    coefficients = _numbers(raw.get("coefficients", {}), "risk.coefficients", fail)
    reference = _numbers(raw.get("reference", {}), "risk.reference", fail)
    for name in [*coefficients, *reference]:
        if name not in declared:
            raise fail("risk.coefficients" if name in coefficients else "risk.reference",
                       f"{name!r} is not one of the indicator's covariates ({', '.join(declared) or 'none'})")
    missing = [name for name in coefficients if name not in reference]
    if missing:
        raise fail("risk.reference", f"needs a value for {missing[0]!r} (used when the covariate is missing)")
    spare = [name for name in reference if name not in coefficients]
    if spare:
        raise fail("risk.reference", f"{spare[0]!r} has no coefficient")
    names = tuple(name for name in declared if name in coefficients)
    return RiskModel(IDENTITY if continuous else LOGIT, float(intercept), names,
                     tuple(coefficients[n] for n in names), tuple(reference[n] for n in names))


def _numbers(raw: Any, where: str, fail: Callable[[str, str], Exception]) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise fail(where, "must be a table of covariate = number")
    for name, value in raw.items():
        if not _finite(value):
            raise fail(where, f"{name!r} must be a finite number, not {value!r}")
    return {name: float(value) for name, value in raw.items()}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
