"""Validation and normalisation of one clinical event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import clinical_event

from streams.catalogue.sites import load_sites
from streams.clinical.codes import CodeMap
from streams.clinical.normaliser import ClinicalNormaliser
from streams.clinical.pseudonym import Pseudonymiser
from streams.vocabulary.dead_letters import Rejected

INGEST = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)
HOUR = 3_600_000_000


@pytest.fixture(scope="module")
def normaliser() -> ClinicalNormaliser:
    return ClinicalNormaliser(load_sites(), CodeMap.load(), Pseudonymiser(b"k" * 40), future_tolerance_s=3600)


def reject_reason(normaliser: ClinicalNormaliser, **overrides: Any) -> str:
    with pytest.raises(Rejected) as err:
        normaliser.normalise(clinical_event(**overrides), INGEST)
    assert "\n" not in err.value.rejection.message
    return err.value.rejection.reason


def test_admission_is_normalised_and_stripped_of_identifiers(normaliser: ClinicalNormaliser) -> None:
    out = normaliser.normalise(clinical_event(), INGEST)
    assert out["event_time"] == int(datetime(2025, 1, 1, 11, 0, tzinfo=UTC).timestamp() * 1e6)
    assert (out["region"], out["country"]) == ("NL-NH", "NL")
    assert out["code"] == "I50.9" and out["code_system"] == "ICD10"
    assert set(out["concepts"]) == {"heart_failure", "heart_failure_broad"}
    text = repr(out)
    for identifier in ("MRN-0001", "ENC-1", "Jan Jansen", "Dam 1", "free text"):
        assert identifier not in text
    assert len(out["patient_pseudonym"]) == 32 and len(out["encounter_pseudonym"]) == 32


def test_lab_value_is_converted_to_the_canonical_unit(normaliser: ClinicalNormaliser) -> None:
    out = normaliser.normalise(clinical_event(event_type="LAB_RESULT", code_system="http://loinc.org",
                                              code="2160-0", value=1.2, unit="mg/dl"), INGEST)
    assert out["unit"] == "umol/L" and out["value"] == pytest.approx(106.08)
    assert out["concepts"] == ["creatinine"]


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"source_patient_id": "  "}, "missing_field"),
    ({"event_id": ""}, "missing_field"),
    ({"site_id": "XX-NOPE"}, "unknown_site"),
    ({"event_type": "UNKNOWN"}, "unknown_event_type"),
    ({"encounter_id": None}, "missing_field"),
    ({"time_zone": "Europe/Atlantis"}, "invalid_time_zone"),
    ({"event_time": 1_735_732_800_000_000 + 48 * HOUR}, "future_time"),
    ({"event_time": INGEST + 72 * HOUR, "recorded_time": INGEST + 72 * HOUR, "time_zone": None}, "future_time"),
    ({"event_time": -3_000_000_000_000_000}, "implausible_time"),
    ({"event_type": "LAB_RESULT", "code_system": "LOINC", "code": "2857-1", "value": -1.0, "unit": "ng/mL"},
     "out_of_range"),
    ({"event_type": "LAB_RESULT", "code_system": "LOINC", "code": "718-7", "value": 900.0, "unit": "g/L"},
     "out_of_range"),
    ({"event_type": "LAB_RESULT", "code_system": "LOINC", "code": "2857-1", "value": 1.0, "unit": "furlongs"},
     "unit_unconvertible"),
    ({"event_type": "LAB_RESULT", "code_system": "LOINC", "code": "2857-1", "value": 1.0, "unit": None},
     "missing_unit"),
    ({"event_type": "LAB_RESULT", "code_system": "LOINC", "code": "9999-9", "value": None}, "missing_value"),
    ({"event_type": "DIAGNOSIS", "code": None}, "missing_field"),
    ({"event_type": "PROM_RESPONSE", "prom": None}, "missing_field"),
    ({"event_type": "PROM_RESPONSE", "prom": {"instrument": "EPIC-26", "domain": "urinary_incontinence",
                                              "score": 140.0}}, "out_of_range"),
    ({"birth_year": 1700}, "out_of_range"),
    # Input limits (RWE_MAX_ID_LENGTH 128, RWE_MAX_CODE_LENGTH 64 by default).
    ({"event_id": "e" * 129}, "field_too_long"),
    ({"source_patient_id": "p" * 200_000}, "field_too_long"),
    ({"encounter_id": "x" * 129}, "field_too_long"),
    ({"code": "I50." + "9" * 100}, "field_too_long"),
    ({"event_type": "PROM_RESPONSE", "prom": {"instrument": "E" * 65, "domain": "d", "score": 1.0}},
     "field_too_long"),
    ({"encounter_id": "  "}, "missing_field"),
    ({"value": -3.0}, "unexpected_value"),  # an admission carries no measurement
    ({"event_type": "DIAGNOSIS", "value": 1.0}, "unexpected_value"),
])
def test_rejections_have_stable_reasons(normaliser: ClinicalNormaliser, overrides: dict[str, Any],
                                        reason: str) -> None:
    assert reject_reason(normaliser, **overrides) == reason


def test_unitless_score_may_omit_its_unit(normaliser: ClinicalNormaliser) -> None:
    out = normaliser.normalise(clinical_event(event_type="LAB_RESULT", code_system="LN", code="72106-8",
                                              value=24.0, unit=None), INGEST)
    assert (out["value"], out["unit"], out["concepts"]) == (24.0, "{score}", ["mmse"])


def test_unmapped_codes_pass_through_visibly(normaliser: ClinicalNormaliser) -> None:
    out = normaliser.normalise(clinical_event(event_type="DIAGNOSIS", code="J18.9"), INGEST)
    assert out["mapped"] is False and out["concepts"] == [] and out["code"] == "J18.9"
    out = normaliser.normalise(clinical_event(event_type="DIAGNOSIS", code_system="LOCAL-XYZ", code="42"), INGEST)
    assert out["mapped"] is False and out["code_system"] is None


def test_icd10_variants_map_per_site_coding(normaliser: ClinicalNormaliser) -> None:
    cm = normaliser.normalise(clinical_event(site_id="ES-HCB", event_type="DIAGNOSIS", code_system="ICD-10-CM",
                                             code="c9201", time_zone="Europe/Madrid"), INGEST)
    assert cm["code"] == "C92.01" and {"aml", "aml_in_remission"} <= set(cm["concepts"])
    who = normaliser.normalise(clinical_event(event_type="DIAGNOSIS", code="F001"), INGEST)
    assert "alzheimers_disease" in who["concepts"]
    not_in_cm = normaliser.normalise(clinical_event(site_id="ES-HCB", event_type="DIAGNOSIS",
                                                    code_system="ICD-10-CM", code="F00.1"), INGEST)
    assert not_in_cm["mapped"] is False


def test_national_id_links_a_patient_across_sites(normaliser: ClinicalNormaliser) -> None:
    a = normaliser.normalise(clinical_event(source_patient_id="123", patient_id_issuer="NHI-NL"), INGEST)
    b = normaliser.normalise(clinical_event(site_id="DE-CHA", source_patient_id="123", patient_id_issuer="NHI-NL",
                                            time_zone="Europe/Berlin"), INGEST)
    assert a["patient_pseudonym"] == b["patient_pseudonym"]
    assert a["encounter_pseudonym"] != b["encounter_pseudonym"]


def test_ids_an_ingest_endpoint_pseudonymised_are_kept_as_they_are(normaliser: ClinicalNormaliser) -> None:
    pseudonyms = Pseudonymiser(b"k" * 40)
    patient, encounter = pseudonyms.patient("123", "NHI-NL", "NL-AMC"), pseudonyms.encounter("ENC-1", "NL-AMC")
    clear = normaliser.normalise(clinical_event(source_patient_id="123", patient_id_issuer="NHI-NL"), INGEST)
    ingested = normaliser.normalise(clinical_event(source_patient_id=patient, encounter_id=encounter,
                                                   pseudonymised=True), INGEST)
    assert (ingested["patient_pseudonym"], ingested["encounter_pseudonym"]) == (patient, encounter)
    assert (clear["patient_pseudonym"], clear["encounter_pseudonym"]) == (patient, encounter)


def test_a_malformed_code_is_not_a_missing_one(normaliser: ClinicalNormaliser) -> None:
    assert reject_reason(normaliser, event_type="DIAGNOSIS", code="§§ not a code §§") == "invalid_code"


# --------------------------------------------------------------- the events real feeds carry (issue 12)
def test_a_ward_transfer_is_an_event_of_its_stay(normaliser: ClinicalNormaliser) -> None:
    out = normaliser.normalise(clinical_event(event_type="WARD_TRANSFER", code_system=None, code=None,
                                              admission_type=None), INGEST)
    assert out["event_type"] == "WARD_TRANSFER" and out["encounter_pseudonym"]
    assert reject_reason(normaliser, event_type="WARD_TRANSFER", encounter_id=None, code_system=None,
                         code=None) == "missing_field"


def test_a_care_home_admission_needs_no_encounter(normaliser: ClinicalNormaliser) -> None:
    out = normaliser.normalise(clinical_event(event_type="CARE_HOME_ADMISSION", encounter_id=None,
                                              code_system=None, code=None, admission_type=None), INGEST)
    assert (out["event_type"], out["encounter_pseudonym"]) == ("CARE_HOME_ADMISSION", None)


def response(code: str, system: str = "ELN-2022", **overrides: Any) -> dict[str, Any]:
    return clinical_event(event_type="LAB_RESULT", code_system="LOINC", code="88040-1", admission_type=None,
                          coded_value={"system": system, "code": code}, **overrides)


def test_a_coded_result_is_carried_canonical_with_its_concepts(normaliser: ClinicalNormaliser) -> None:
    out = normaliser.normalise(response("CR MRD-"), INGEST)
    assert out["coded_value"] == {"system": "ELN2022", "code": "CRMRDNEG"}
    assert out["concepts"] == ["aml_response_assessment", "aml_response_cr_mrd_negative"]
    assert out["value"] is None and out["mapped"]
    unmapped = normaliser.normalise(response("XYZ"), INGEST)
    assert unmapped["coded_value"] == {"system": "ELN2022", "code": "XYZ"} and not unmapped["mapped"]


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"coded_value": {"system": "ELN2022", "code": "C R!"}}, "invalid_code"),
    ({"event_type": "DIAGNOSIS", "code_system": "ICD-10", "code": "C92.0"}, "unexpected_value"),
    ({"coded_value": {"system": "ELN2022", "code": "C" * 65}}, "field_too_long"),
])
def test_a_bad_coded_result_is_a_dead_letter(normaliser: ClinicalNormaliser, overrides: dict[str, Any],
                                             reason: str) -> None:
    event = response("CR")
    event.update(overrides)
    assert reject_reason(normaliser, **event) == reason


def test_a_lab_result_needs_a_value_or_a_coded_value(normaliser: ClinicalNormaliser) -> None:
    assert reject_reason(normaliser, **{**response("CR"), "coded_value": None}) == "missing_value"


@pytest.mark.parametrize(("instrument", "domain"), [
    ("EPIC-26", "urinary_incontinence"), ("EPIC26", "Urinary Incontinence"), ("epic 26", "urinary-incontinence"),
])
def test_prom_names_are_normalised_to_one_key_and_scored_on_its_scale(normaliser: ClinicalNormaliser,
                                                                      instrument: str, domain: str) -> None:
    prom = {"instrument": instrument, "domain": domain, "score": 72.5}
    event = clinical_event(event_type="PROM_RESPONSE", code_system=None, code=None, admission_type=None,
                           encounter_id=None, prom=prom)
    assert normaliser.normalise(event, INGEST)["prom"] == {"instrument": "EPIC-26", "domain": "urinary_incontinence",
                                                           "score": 72.5}
    event["prom"] = {**prom, "score": 140.0}  # outside EPIC-26's 0-100 in any spelling
    assert reject_reason(normaliser, **event) == "out_of_range"
