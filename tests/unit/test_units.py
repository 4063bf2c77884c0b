"""Lab units: spelling normalisation, conversion into catalogue units, range checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.clinical.codes import CodeMap
from streams.clinical.units import REASONS, LabDefinition, ValueRejected, normalise_unit, to_canonical

LABS = CodeMap.load().labs


def reject(lab: str, value: object, unit: str | None) -> ValueRejected:
    with pytest.raises(ValueRejected) as info:
        to_canonical(LABS[lab], value, unit)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(("spelling", "key"), [
    ("mg/dL", "mg/dl"),
    ("MG/DL", "mg/dl"),
    (" mg / dl ", "mg/dl"),
    ("umol/l", "umol/l"),
    ("\u00b5mol/L", "umol/l"),  # micro sign
    ("\u03bcmol/L", "umol/l"),  # Greek mu
    ("mcmol/L", "umol/l"),
    ("\u00b5g/L", "ug/l"),
    ("mcg/L", "ug/l"),
    ("10^9/L", "10*9/l"),
    ("x10^9/L", "10*9/l"),
    ("\u00d710E9/L", "10*9/l"),
    ("10**3/uL", "10*3/ul"),
    ("10*3/mcL", "10*3/ul"),
    ("/mm3", "/ul"),
    ("1/uL", "/ul"),
    ("{cells}/uL", "/ul"),
    ("{score}", "{score}"),
    ("{Score}", "{score}"),
    ("percent", "%"),
    ("", ""),
])
def test_normalise_unit(spelling: str, key: str) -> None:
    assert normalise_unit(spelling) == key


def test_normalise_unit_keeps_prefixes_apart() -> None:
    assert normalise_unit("mmol/L") != normalise_unit("mol/L")
    assert normalise_unit("mg/dL") != normalise_unit("g/dL")
    assert normalise_unit("ng/mL") != normalise_unit("ug/mL")
    assert normalise_unit("umol/L") != normalise_unit("mmol/L")


# Every conversion the catalogue declares, with the factor from outcome-catalogue.md.
@pytest.mark.parametrize(("lab", "value", "unit", "expected"), [
    ("psa", 4.2, "ng/mL", 4.2),
    ("psa", 4.2, "ug/L", 4.2),
    ("psa", 4.2, "\u00b5g/l", 4.2),
    ("psa", 4.2, "mcg/L", 4.2),
    ("nt_probnp", 1250.0, "pg/mL", 1250.0),
    ("nt_probnp", 1250.0, "ng/L", 1250.0),
    ("bnp", 400.0, "pg/mL", 400.0),
    ("bnp", 400.0, "ng/l", 400.0),
    ("troponin_i", 34.0, "ng/L", 34.0),
    ("troponin_i", 34.0, "pg/mL", 34.0),
    ("troponin_i", 0.034, "ng/mL", 34.0),
    ("troponin_i", 0.034, "ug/L", 34.0),
    ("troponin_t_hs", 14.0, "ng/L", 14.0),
    ("troponin_t_hs", 14.0, "pg/mL", 14.0),
    ("troponin_t_hs", 0.014, "ng/mL", 14.0),
    ("creatinine", 80.0, "umol/L", 80.0),
    ("creatinine", 80.0, "\u00b5mol/L", 80.0),
    ("creatinine", 1.0, "mg/dL", 88.4),
    ("creatinine", 1.0, "MG/DL", 88.4),
    ("creatinine", 1.0, "mg/dl", 88.4),
    ("hemoglobin", 135.0, "g/L", 135.0),
    ("hemoglobin", 13.5, "g/dL", 135.0),
    ("hemoglobin", 8.4, "mmol/L", 8.4 * 16.113),  # mmol/L = g/dL x 0.6206
    ("bun", 5.0, "mmol/L", 5.0),
    ("bun", 14.0, "mg/dL", 14.0 * 0.357),  # mmol/L x 2.801 = mg/dL
    ("glucose", 5.5, "mmol/L", 5.5),
    ("glucose", 99.0, "mg/dL", 99.0 * 0.0555),  # mmol/L x 18.016 = mg/dL
    ("mmse", 24.0, "{score}", 24.0),
    ("mmse", 24.0, "score", 24.0),
    ("mmse", 24.0, "1", 24.0),
    ("marrow_blasts", 3.5, "%", 3.5),
    ("neutrophils", 1.5, "10*9/L", 1.5),
    ("neutrophils", 1.5, "10^9/l", 1.5),
    ("neutrophils", 1.5, "10*3/uL", 1.5),
    ("neutrophils", 1.5, "G/L", 1.5),
    ("neutrophils", 1.5, "/nL", 1.5),
    ("neutrophils", 1500.0, "/uL", 1.5),
    ("neutrophils", 1500.0, "cells/mm3", None),  # "cells" is not UCUM: refused below
    ("platelets", 150.0, "10*9/L", 150.0),
    ("platelets", 150.0, "10*3/\u00b5L", 150.0),
    ("platelets", 150000.0, "/uL", 150.0),
    ("platelets", 150000.0, "/mm3", 150.0),
])
def test_conversions(lab: str, value: float, unit: str, expected: float | None) -> None:
    if expected is None:
        assert reject(lab, value, unit).reason == "unit_unconvertible"
        return
    converted, canonical = to_canonical(LABS[lab], value, unit)
    assert canonical == LABS[lab].unit
    assert converted == pytest.approx(expected, rel=1e-9)


def test_the_catalogue_factors_match_the_reference() -> None:
    assert LABS["creatinine"].factors["mg/dl"] == 88.4
    assert LABS["hemoglobin"].factors["g/dl"] == 10.0
    assert LABS["hemoglobin"].factors["mmol/l"] == pytest.approx(10 / 0.6206, rel=1e-4)
    assert LABS["troponin_i"].factors["ng/ml"] == 1000.0
    assert LABS["bun"].factors["mg/dl"] == pytest.approx(1 / 2.801, rel=1e-3)
    assert LABS["glucose"].factors["mg/dl"] == pytest.approx(1 / 18.016, rel=1e-3)


def test_every_lab_accepts_its_canonical_unit_at_both_range_ends() -> None:
    for lab in LABS.values():
        assert to_canonical(lab, lab.low, lab.unit) == (lab.low, lab.unit)
        assert to_canonical(lab, lab.high, lab.unit) == (lab.high, lab.unit)
        assert lab.factors[normalise_unit(lab.unit)] == 1.0


@pytest.mark.parametrize(("lab", "value", "unit"), [
    ("psa", -1.0, "ng/mL"),
    ("hemoglobin", 900.0, "g/L"),
    ("hemoglobin", 90.0, "g/dL"),  # 900 g/L after conversion
    ("hemoglobin", 5.0, "g/L"),
    ("creatinine", 50.0, "mg/dL"),  # 4420 umol/L
    ("mmse", 31.0, "{score}"),
    ("mmse", -1.0, None),
    ("marrow_blasts", 101.0, "%"),
    ("glucose", 0.1, "mmol/L"),
    ("psa", math.nan, "ng/mL"),
    ("psa", math.inf, "ng/mL"),
    ("psa", -math.inf, "ng/mL"),
    ("mmse", math.nan, None),
    ("troponin_i", 1e308, "ng/mL"),  # overflows to inf after conversion
])
def test_out_of_range(lab: str, value: float, unit: str | None) -> None:
    assert reject(lab, value, unit).reason == "out_of_range"


def test_out_of_range_message_names_lab_value_and_range() -> None:
    assert reject("psa", -1.0, "ng/mL").message == "psa value -1.0 ng/mL outside 0-10000 ng/mL"
    message = reject("creatinine", 50.0, "mg/dL").message
    assert message == "creatinine value 4420.0 umol/L (from 50.0 'mg/dL') outside 5-3000 umol/L"


@pytest.mark.parametrize("unit", [None, "", "   "])
def test_missing_unit(unit: str | None) -> None:
    assert reject("psa", 1.0, unit).reason == "missing_unit"


@pytest.mark.parametrize("unit", [None, "", "  ", "{score}", "score", "{SCORE}", "1"])
def test_unitless_mmse_accepts_a_missing_or_score_unit(unit: str | None) -> None:
    assert to_canonical(LABS["mmse"], 27.0, unit) == (27.0, "{score}")


@pytest.mark.parametrize(("lab", "unit"), [
    ("psa", "mmol/L"),
    ("creatinine", "mmol/L"),  # mmol/L is not umol/L: no silent factor 1000
    ("hemoglobin", "mol/L"),
    ("hemoglobin", "mg/L"),
    ("mmse", "points"),
    ("psa", "ng/mL please call me"),
])
def test_unit_unconvertible(lab: str, unit: str) -> None:
    exc = reject(lab, 1.0, unit)
    assert exc.reason == "unit_unconvertible"
    assert LABS[lab].unit in exc.message


def test_unit_message_bounds_free_text() -> None:
    exc = reject("psa", 1.0, "x" * 500)
    assert len(exc.message) < 120


@pytest.mark.parametrize("value", [None, "abc", object()])
def test_missing_or_non_numeric_value(value: object) -> None:
    assert reject("psa", value, "ng/mL").reason == "missing_value"


def test_numeric_types_are_accepted() -> None:
    assert to_canonical(LABS["psa"], 3, "ng/mL") == (3.0, "ng/mL")


@pytest.mark.parametrize(("factors", "low", "high", "problem"), [
    ({"mg/dL": 0.0}, 0.0, 1.0, "positive"),
    ({"mg/dL": math.nan}, 0.0, 1.0, "positive"),
    ({"mg/dL": 1.0, "MG/DL": 2.0}, 0.0, 1.0, "differ"),
    ({"umol/L": 2.0}, 0.0, 1.0, "canonical"),
    ({}, 2.0, 1.0, "range"),
    ({}, 0.0, math.inf, "range"),
])
def test_lab_definition_validates(factors: dict[str, float], low: float, high: float,
                                  problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        LabDefinition("x", "umol/L", factors, low, high)


def test_lab_definition_is_hashable_and_immutable() -> None:
    lab = LABS["psa"]
    assert hash(lab) == hash(lab)
    with pytest.raises(TypeError):
        lab.factors["mg/dl"] = 1.0  # type: ignore[index]


def test_reasons_are_the_documented_ones() -> None:
    assert REASONS == ("missing_value", "missing_unit", "unit_unconvertible", "out_of_range")


@given(lab=st.sampled_from(sorted(LABS)),
       value=st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=10)),
       unit=st.one_of(st.none(), st.text(max_size=30),
                      st.sampled_from(["mg/dL", "ng/mL", "g/dL", "mmol/L", "{score}", "%"])))
def test_to_canonical_raises_only_value_rejected(lab: str, value: object, unit: str | None) -> None:
    try:
        converted, canonical = to_canonical(LABS[lab], value, unit)  # type: ignore[arg-type]
    except ValueRejected as exc:
        assert exc.reason in REASONS
        assert "\n" not in exc.message
    else:
        assert LABS[lab].low <= converted <= LABS[lab].high
        assert canonical == LABS[lab].unit
