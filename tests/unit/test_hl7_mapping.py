"""The HL7 v2 mapping: tolerant parsing, fields to ClinicalEvent, and the same answer as the Avro feed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import TEST_KEY, clinical_event

from streams.catalogue.sites import load_sites
from streams.clinical.codes import CodeMap
from streams.clinical.normaliser import ClinicalNormaliser
from streams.clinical.pseudonym import Pseudonymiser
from streams.ingest.gateway import pseudonymise
from streams.ingest.hl7_mapping import Hl7Mapper, header, parse, parse_dtm
from streams.vocabulary.dead_letters import Rejected

EPISODE = (Path(__file__).parents[1] / "data" / "hl7_episode.txt").read_text().split("\n\n")
SITES = load_sites()
INGEST = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)


def mapped(text: str, facilities: dict[str, str] | None = None) -> list[dict]:
    message = parse(text)
    return Hl7Mapper(SITES, facilities or {}).map(message, header(message)).events


def reason(text: str) -> str:
    with pytest.raises(Rejected) as err:
        mapped(text)
    return err.value.rejection.reason


def test_an_admission_with_a_diagnosis_a_z_segment_and_lf_line_ends() -> None:
    admission, diagnosis = mapped(EPISODE[0])
    assert admission["event_type"] == "ADMISSION" and admission["admission_type"] == "EMERGENCY"
    # The national identifier (NNNLD) wins over the MRN; its assigning authority is the issuer.
    assert (admission["source_patient_id"], admission["patient_id_issuer"]) == ("123456789", "NHI-NL")
    assert admission["encounter_id"] == "V0001" and admission["time_zone"] == "Europe/Amsterdam"
    assert (admission["birth_year"], admission["sex"]) == (1948, "FEMALE")
    assert admission["patient_name"] is None and admission["address"] is None  # never copied
    assert (diagnosis["code_system"], diagnosis["code"]) == ("I10", "I50.9")
    assert admission["event_id"] != diagnosis["event_id"]


def test_lab_results_keep_exact_numbers_and_leave_out_text_and_censored_values() -> None:
    [result] = mapped(EPISODE[1])
    assert (result["code_system"], result["code"], result["value"], result["unit"]) == ("LN", "33762-6", 4500.0,
                                                                                          "pg/mL")


def test_an_expired_discharge_is_a_death_and_pid_30_a_death_event() -> None:
    discharge, death = mapped(EPISODE[2])
    assert discharge["disposition"] == "DEATH"
    assert death["event_type"] == "DEATH" and death["event_time"] == parse_dtm("20250105143000", "")[0]


def test_coded_assessments_other_separators_and_escapes() -> None:
    text = ("MSH#$%!&#HEMA#NL-AMC#RWE#RWE#20250301100000##ORU$R01#H1#P#2.5\r"
            "PID#1##77$$$NHI-NL$NNNLD\r"
            "OBX#1#CWE#96541-8$AML response$LN##CRi$Complete remission with incomplete recovery$ELN2022####F\r")
    [result] = mapped(text)
    assert result["coded_value"] == {"system": "ELN2022", "code": "CRi"}
    assert result["source_patient_id"] == "77"


def test_times_with_an_offset_become_utc() -> None:
    text = EPISODE[0].replace("20250101121000|||||NL-AMC", "20250101121000+0100|||||NL-AMC")
    admission = mapped(text)[0]
    assert admission["time_zone"] is None
    assert admission["recorded_time"] == int(datetime(2025, 1, 1, 11, 10, tzinfo=UTC).timestamp() * 1e6)
    # the admit time (no offset) was site wall-clock time: 12:00 in Amsterdam is 11:00 UTC
    assert admission["event_time"] == int(datetime(2025, 1, 1, 11, 0, tzinfo=UTC).timestamp() * 1e6)


def test_what_cannot_be_accepted_has_a_reason() -> None:
    assert reason(EPISODE[3]) == "unsupported_message"  # A13
    assert reason(EPISODE[4]) == "unknown_site"
    assert reason(EPISODE[0].replace("V0001^^^AMC^VN", "")) == "missing_field"
    assert reason(EPISODE[0].replace("20250101120000\nDG1", "2025-01-01\nDG1")) == "implausible_time"
    assert reason(EPISODE[0].replace("ADT^A01", "ADT^A40")) == "patient_merge"
    with pytest.raises(Rejected) as err:
        parse("PID|1||x")
    assert err.value.rejection.reason == "unparseable"


def test_a_facility_maps_to_its_site() -> None:
    assert {e["site_id"] for e in mapped(EPISODE[0].replace("|NL-AMC|", "|AMC|"), {"AMC": "NL-AMC"})} == {"NL-AMC"}


def test_the_same_episode_as_hl7_and_as_avro_normalises_identically() -> None:
    """What the listener publishes (pseudonymised at once) and what a hospital's own Avro producer
    publishes for the same care give the same normalised events, but for their event ids."""
    pseudonyms = Pseudonymiser(TEST_KEY.encode())
    normaliser = ClinicalNormaliser(SITES, CodeMap.load(), Pseudonymiser(TEST_KEY.encode()), 3600)
    admission, diagnosis = mapped(EPISODE[0])
    from_hl7 = [normaliser.normalise(pseudonymise(e, pseudonyms), INGEST) for e in (admission, diagnosis)]
    local = {"time_zone": "Europe/Amsterdam", "source_patient_id": "123456789", "patient_id_issuer": "NHI-NL",
             "encounter_id": "V0001", "birth_year": 1948, "sex": "FEMALE",
             "recorded_time": parse_dtm("20250101121000", "")[0]}
    from_avro = [normaliser.normalise(clinical_event(**local, event_id="a-1", event_type="ADMISSION",
                                                     event_time=parse_dtm("20250101120000", "")[0],
                                                     code_system=None, code=None), INGEST),
                 normaliser.normalise(clinical_event(**local, event_id="a-2", event_type="DIAGNOSIS",
                                                     event_time=parse_dtm("20250101120000", "")[0],
                                                     code_system="ICD-10", code="I50.9", admission_type=None),
                                      INGEST)]
    for hl7_event, avro_event in zip(from_hl7, from_avro, strict=True):
        assert {**hl7_event, "event_id": None} == {**avro_event, "event_id": None}


def test_a_file_splits_into_messages_whatever_its_framing() -> None:
    from streams.ingest.hl7_import import split_messages

    framed = b"".join(b"\x0b" + m.replace("\n", "\r").encode() + b"\x1c\r" for m in EPISODE[:2])
    batch = b"FHS|^~\\&\nBHS|^~\\&\n" + "\n\n".join(EPISODE[:2]).encode() + b"\nBTS|2\nFTS|1\n"
    for data in (framed, batch):
        messages = list(split_messages(data))
        assert [m[:3] for m in messages] == [b"MSH", b"MSH"]
        assert [header(parse(m.decode())).control_id for m in messages] == ["MSG00001", "LAB0000001"]
