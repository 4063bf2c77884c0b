"""Risk models in the catalogue: validation, scoring rules, the expected field of observations."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from streams.catalogue.definitions import DEFAULT_DIR, load_catalogue
from streams.catalogue.risk import IDENTITY, LOGIT, RiskModel, expected_for
from streams.catalogue.sites import load_sites
from streams.errors import ConfigError
from streams.outcomes.ascertainment import EXCLUDED, FINAL, OPEN, Observation
from streams.outcomes.tracker import observation_record

CATALOGUE = load_catalogue()

MODEL = """
[indicator.{ind}.risk]
intercept = -2.0
coefficients = {{ age = 0.05, male = 0.4 }}
reference = {{ age = 75.0, male = 0.5 }}
"""


def catalogue_dir(tmp_path: Path, extra: str = "", ind: str = "ami_mortality_30d") -> Path:
    """A copy of the built-in catalogue with the risk table of ``ind`` replaced by ``extra``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for path in DEFAULT_DIR.glob("*.toml"):
        text = path.read_text()
        if path.name == "cardiovascular.toml":
            text = _without_risk(text, ind) + extra
        (tmp_path / path.name).write_text(text)
    return tmp_path


def _without_risk(text: str, ind: str) -> str:
    header = f"[indicator.{ind}.risk]"
    if header not in text:
        return text
    head, rest = text.split(header, 1)
    tail = rest.split("\n[", 1)
    return head + ("\n[" + tail[1] if len(tail) > 1 else "")


def test_logistic_and_linear_scoring_by_hand() -> None:
    model = RiskModel(LOGIT, -2.0, ("age", "male"), (0.05, 0.4), (75.0, 0.5))
    eta = -2.0 + 0.05 * (85 - 75) + 0.4 * (1 - 0.5)
    assert model.expected({"age": 85.0, "male": 1.0}) == pytest.approx(1 / (1 + math.exp(-eta)), rel=1e-15)
    linear = RiskModel(IDENTITY, 6.0, ("age",), (0.1,), (70.0,))
    assert linear.expected({"age": 80.0}) == pytest.approx(7.0)
    assert 0 < model.expected({"age": 1e6}) <= 1.0 and 0 <= model.expected({"age": -1e6}) < 1.0


def test_a_missing_covariate_takes_its_reference_value() -> None:
    model = RiskModel(LOGIT, -2.0, ("age", "male"), (0.05, 0.4), (75.0, 0.5))
    assert model.expected({"age": 85.0}) == model.expected({"age": 85.0, "male": 0.5})
    assert model.expected({}) == pytest.approx(1 / (1 + math.exp(2.0)))


def test_expected_only_for_open_and_final() -> None:
    model = RiskModel(LOGIT, 0.0, (), (), ())
    assert expected_for(model, OPEN, {}) == 0.5 and expected_for(model, FINAL, {}) == 0.5
    assert expected_for(model, EXCLUDED, {}) is None
    assert expected_for(None, FINAL, {}) is None


def test_every_built_in_indicator_has_a_model_over_its_own_covariates() -> None:
    for ind in CATALOGUE.indicators.values():
        assert ind.risk is not None, ind.id
        assert ind.risk.link == (IDENTITY if ind.kind == "continuous" else LOGIT)
        assert set(ind.risk.covariates) <= set(ind.covariates)


def test_observation_records_carry_expected() -> None:
    ind = CATALOGUE.indicators["hf_mortality_30d"]
    assert ind.risk is not None
    cov = {"age": 80.0, "male": 1.0}
    sites = load_sites()
    final = Observation("hf_mortality_30d:1", ind.id, "NL-AMC", 0, 1, FINAL, closed_time=1, outcome=0, covariates=cov)
    record = observation_record(final, CATALOGUE, sites)
    assert record["expected"] == ind.risk.expected(cov)
    assert 0 < record["expected"] < 1
    excluded = final._replace(status=EXCLUDED, outcome=None, exclusion="x")
    assert observation_record(excluded, CATALOGUE, sites)["expected"] is None


def test_a_valid_model_loads_and_changes_the_catalogue_version(tmp_path: Path) -> None:
    base = load_catalogue(catalogue_dir(tmp_path / "a"))
    changed = load_catalogue(catalogue_dir(tmp_path / "b", MODEL.format(ind="ami_mortality_30d")))
    model = changed.indicators["ami_mortality_30d"].risk
    assert model == RiskModel(LOGIT, -2.0, ("age", "male"), (0.05, 0.4), (75.0, 0.5))
    assert base.version != changed.version  # the coefficients are part of the digest
    nudged = load_catalogue(catalogue_dir(tmp_path / "c", MODEL.format(ind="ami_mortality_30d").replace(
        "age = 0.05", "age = 0.051")))
    assert nudged.version != changed.version


@pytest.mark.parametrize(("table", "field", "problem"), [
    ("risk = 3", "risk", "must be a table"),
    ("better = 'sideways'", "better", "must be one of lower, higher"),
    ("[indicator.ami_mortality_30d.risk]\ncoefficients = { age = 0.1 }\nreference = { age = 70.0 }",
     "risk.intercept", "required"),
    ("[indicator.ami_mortality_30d.risk]\nintercept = 'high'", "risk.intercept", "finite number"),
    ("[indicator.ami_mortality_30d.risk]\nintercept = nan", "risk.intercept", "finite number"),
    ("[indicator.ami_mortality_30d.risk]\nintercept = 1.0\nslope = 2.0", "risk.slope", "unknown field"),
    ("[indicator.ami_mortality_30d.risk]\nintercept = 1.0\ncoefficients = { baseline_mmse = 0.1 }\n"
     "reference = { baseline_mmse = 20.0 }", "risk.coefficients", "'baseline_mmse' is not one of the indicator's"),
    ("[indicator.ami_mortality_30d.risk]\nintercept = 1.0\ncoefficients = { age = 0.1 }",
     "risk.reference", "needs a value for 'age'"),
    ("[indicator.ami_mortality_30d.risk]\nintercept = 1.0\ncoefficients = { age = true }\nreference = { age = 1.0 }",
     "risk.coefficients", "'age' must be a finite number"),
    ("[indicator.ami_mortality_30d.risk]\nintercept = 1.0\nreference = { age = 70.0 }",
     "risk.reference", "'age' has no coefficient"),
])
def test_a_bad_model_is_one_error_naming_file_indicator_and_field(tmp_path: Path, table: str, field: str,
                                                                   problem: str) -> None:
    extra = "\n" + table + "\n"
    if not table.startswith("["):  # a plain key must sit inside the indicator's own table
        path = tmp_path / "cardiovascular.toml"
        catalogue_dir(tmp_path)
        text = path.read_text().replace('covariates = ["age", "male", "prior_admissions_12m", "lab:troponin_i:log"]',
                                        'covariates = ["age", "male", "prior_admissions_12m", "lab:troponin_i:log"]\n'
                                        + table, 1)
        path.write_text(text)
    else:
        catalogue_dir(tmp_path, extra)
    with pytest.raises(ConfigError) as err:
        load_catalogue(tmp_path)
    assert str(err.value).startswith(f"cardiovascular.toml: indicator ami_mortality_30d: {field}: ")
    assert problem in str(err.value)
    assert "\n" not in str(err.value)


def test_the_built_in_catalogue_copies_cleanly(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_DIR, tmp_path / "same")
    assert load_catalogue(tmp_path / "same").version == CATALOGUE.version
