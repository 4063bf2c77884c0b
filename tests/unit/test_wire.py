"""Wire formats: single-object and container round trips, schema evolution, hostile bytes."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest
from conftest import clinical_event
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.wire import formats as wire
from streams.wire import schemas


@pytest.fixture(scope="module")
def decoder() -> wire.Decoder:
    return wire.Decoder(schemas.CLINICAL_EVENT)


def test_single_object_header_is_magic_plus_little_endian_crc64() -> None:
    data = wire.Encoder(schemas.CLINICAL_EVENT).encode(clinical_event())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schemas.crc64_fingerprint(schemas.raw_schema(schemas.CLINICAL_EVENT))


def test_crc64_matches_the_avro_spec_test_vector() -> None:
    # Avro spec: fingerprint64 of "null" is 0x63DD24E7CC258F8A, little-endian on the wire.
    assert schemas.crc64_fingerprint("null") == struct.pack("<Q", 0x63DD24E7CC258F8A)


def test_single_object_round_trip(decoder: wire.Decoder) -> None:
    event = clinical_event(prom={"instrument": "EPIC-26", "domain": "urinary_incontinence", "score": 72.5})
    assert decoder.decode(wire.Encoder(schemas.CLINICAL_EVENT).encode(event)) == [event]


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_container_carries_many_events(decoder: wire.Decoder, codec: str) -> None:
    events = [clinical_event(event_id=f"e{i}") for i in range(1200)]
    assert decoder.decode(wire.encode_container(schemas.CLINICAL_EVENT, events, codec=codec)) == events


def test_confluent_framing_resolves_the_id_through_the_lookup() -> None:
    raw = schemas.raw_schema(schemas.CLINICAL_EVENT)
    decoder = wire.Decoder(schemas.CLINICAL_EVENT, registry_lookup={42: raw}.__getitem__)
    data = wire.Encoder(schemas.CLINICAL_EVENT, wire.CONFLUENT, schema_id=42).encode(clinical_event())
    assert data[:5] == b"\x00\x00\x00\x00\x2a"
    assert decoder.decode(data) == [clinical_event()]


def test_confluent_framing_without_registry_is_unknown_schema(decoder: wire.Decoder) -> None:
    data = wire.Encoder(schemas.CLINICAL_EVENT, wire.CONFLUENT, schema_id=1).encode(clinical_event())
    with pytest.raises(wire.DecodeError) as err:
        decoder.decode(data)
    assert err.value.reason == "unknown_schema"


def _v1_bytes(event: dict) -> bytes:
    v1 = json.loads((schemas.schemas_dir() / "history" / "rwe.events.ClinicalEvent.v1.avsc").read_text())
    assert "patient_id_issuer" not in {f["name"] for f in v1["fields"]}
    without_issuer = {k: v for k, v in event.items() if k != "patient_id_issuer"}
    return _written_with("rwe.events.ClinicalEvent.v1.avsc", without_issuer)


def test_record_written_with_v1_decodes_with_the_current_reader(decoder: wire.Decoder) -> None:
    event = clinical_event(patient_id_issuer=None)
    decoded = decoder.decode(_v1_bytes(event))
    assert decoded == [event]  # the field v1 lacked takes its default


def _written_with(history_file: str, record: dict) -> bytes:
    """``record`` as a producer with the historical schema writes it (single-object encoding)."""
    writer = wire._load_file(schemas.schemas_dir() / "history" / history_file)
    buf = io.BytesIO()
    buf.write(wire.SINGLE_OBJECT_MAGIC + schemas.crc64_fingerprint(writer))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schemas._strip_logical_types(writer)), record)
    return buf.getvalue()


def test_a_clinical_event_written_with_v2_decodes_with_the_current_reader(decoder: wire.Decoder) -> None:
    event = clinical_event(event_type="LAB_RESULT", code_system="LOINC", code="2160-0", value=1.2, unit="mg/dL")
    old = {k: v for k, v in event.items() if k != "coded_value"}
    assert decoder.decode(_written_with("rwe.events.ClinicalEvent.v2.avsc", old)) == [event]  # coded_value: null


NORMALISED = {
    "event_id": "e", "site_id": "NL-AMC", "region": "NL-NH", "country": "NL", "patient_pseudonym": "p" * 32,
    "encounter_pseudonym": None, "event_type": "LAB_RESULT", "event_time": 1, "recorded_time": 2,
    "ingest_time": 3, "code_system": "LOINC", "code": "72106-8", "concepts": ["mmse"], "mapped": True,
    "value": 24.0, "unit": "{score}", "coded_value": None, "admission_type": None, "disposition": None,
    "birth_year": 1940, "sex": "FEMALE", "prom": None, "code_map_version": "2026.11.1"}


def test_a_normalised_event_written_with_v1_decodes_with_the_current_reader() -> None:
    old = {k: v for k, v in NORMALISED.items() if k != "coded_value"}
    data = _written_with("rwe.events.NormalisedEvent.v1.avsc", old)
    assert wire.Decoder(schemas.NORMALISED_EVENT).decode(data) == [NORMALISED]


@pytest.mark.parametrize("new_type", ["WARD_TRANSFER", "CARE_HOME_ADMISSION"])
def test_an_old_reader_reads_a_new_event_type_as_unknown(new_type: str) -> None:
    # consumers upgrade first, but one that has not reads the enum's default, never fails
    for history_file, record in (
            ("rwe.events.ClinicalEvent.v2.avsc", clinical_event(event_type=new_type, code=None, code_system=None)),
            ("rwe.events.NormalisedEvent.v1.avsc", {**NORMALISED, "event_type": new_type})):
        name = history_file.split(".v")[0]
        new = wire.Encoder(name).encode(record)[10:]  # the body, after the single-object header
        old_reader = fastavro.parse_schema(schemas._strip_logical_types(
            wire._load_file(schemas.schemas_dir() / "history" / history_file)))
        current = fastavro.parse_schema(schemas._strip_logical_types(schemas.raw_schema(name)))
        decoded = fastavro.schemaless_reader(io.BytesIO(new), current, old_reader)
        assert decoded["event_type"] == "UNKNOWN"


def test_every_schema_change_is_backward_compatible() -> None:
    # The policy in schemas/README.md: the current reader reads every historical writer.
    for path in sorted((schemas.schemas_dir() / "history").glob("*.avsc")):
        name = path.name.split(".v")[0]
        store = wire.SchemaStore()
        store.load_family(name)
        assert store.lookup(schemas.crc64_fingerprint(wire._load_file(path))) is not None


def test_other_schema_is_rejected_as_wrong_schema(decoder: wire.Decoder) -> None:
    letter_encoder = wire.Encoder(schemas.NORMALISED_EVENT)
    store = wire.SchemaStore()
    store.add(schemas.raw_schema(schemas.NORMALISED_EVENT))
    strict = wire.Decoder(schemas.CLINICAL_EVENT, store=store)
    normalised = {
        "event_id": "e", "site_id": "s", "region": "r", "country": "c", "patient_pseudonym": "p",
        "encounter_pseudonym": None, "event_type": "DEATH", "event_time": 0, "recorded_time": 0,
        "ingest_time": 0, "code_system": None, "code": None, "concepts": [], "mapped": True, "value": None,
        "unit": None, "admission_type": None, "disposition": None, "birth_year": None, "sex": None,
        "prom": None, "code_map_version": "v"}
    with pytest.raises(wire.DecodeError) as err:
        strict.decode(letter_encoder.encode(normalised))
    assert err.value.reason == "wrong_schema"


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "undecodable"),
    (b"\xc3\x01\x00", "undecodable"),
    (b"\xc3\x01" + b"\x01" * 8 + b"body", "unknown_schema"),
    (b"Obj\x01garbage", "undecodable"),
    (b"{\"json\": true}", "undecodable"),
])
def test_bad_bytes_have_a_reason(decoder: wire.Decoder, data: bytes, reason: str) -> None:
    with pytest.raises(wire.DecodeError) as err:
        decoder.decode(data)
    assert err.value.reason == reason


def test_truncated_and_padded_records_are_rejected(decoder: wire.Decoder) -> None:
    data = wire.Encoder(schemas.CLINICAL_EVENT).encode(clinical_event())
    for bad in (data[:-3], data + b"\x00\x00"):
        with pytest.raises(wire.DecodeError):
            decoder.decode(bad)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    decoder = wire.Decoder(schemas.CLINICAL_EVENT)
    try:
        decoder.decode(data)
    except wire.DecodeError:
        pass


_valid = wire.Encoder(schemas.CLINICAL_EVENT).encode(clinical_event())
_container = wire.encode_container(schemas.CLINICAL_EVENT, [clinical_event(event_id=str(i)) for i in range(5)])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([_valid, _container]), st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_corrupted_valid_records_only_ever_raise_decode_error(base: bytes, at: int, junk: bytes) -> None:
    at %= len(base)
    data = base[:at] + junk + base[at + len(junk):]
    decoder = wire.Decoder(schemas.CLINICAL_EVENT)
    try:
        records = decoder.decode(data)
    except wire.DecodeError:
        return
    assert all(isinstance(r, dict) for r in records)


def test_peek_reads_one_field_of_a_single_record_and_declines_the_rest() -> None:
    observations = wire.Decoder(schemas.OUTCOME_OBSERVATION)
    record = {"observation_id": "o", "indicator": "i", "area": "a", "catalogue_version": "v", "site_id": "s",
              "region": "r", "country": "c", "status": "OPEN", "index_time": 1, "horizon_end": 2, "closed_time": None,
              "outcome": None, "value": None, "expected": None, "exclusion": None, "covariates": {}}
    single = wire.Encoder(schemas.OUTCOME_OBSERVATION).encode(record)
    assert observations.peek(single, "status") == "OPEN"
    container = wire.encode_container(schemas.OUTCOME_OBSERVATION, [record])
    assert observations.peek(container, "status") is wire.NOT_PEEKED
    assert observations.peek(single[:14], "status") is wire.NOT_PEEKED  # truncated: decode() will say why


def test_observations_and_snapshots_of_the_previous_writers_read_with_the_new_fields_defaulted() -> None:
    observation = {"observation_id": "o", "indicator": "hf_mortality_30d", "area": "cardiovascular",
                   "catalogue_version": "v", "site_id": "FI-HUS", "region": "FI-18", "country": "FI",
                   "status": "FINAL", "index_time": 1, "horizon_end": 2, "closed_time": 2, "outcome": 0,
                   "value": None, "expected": 0.1, "exclusion": None, "covariates": {}}
    (read,) = wire.Decoder(schemas.OUTCOME_OBSERVATION).decode(
        _written_with("rwe.outcomes.OutcomeObservation.v1.avsc", observation))
    assert read == {**observation, "revision": 0}
    snapshot = {"indicator": "hf_mortality_30d", "area": "cardiovascular", "catalogue_version": "v",
                "kind": "PROPORTION", "unit": None, "scope": "NETWORK", "scope_id": "network", "window_days": None,
                "as_of": 5, "suppressed": False, "denominator": 10, "numerator": 1, "pending": 2, "excluded": 0,
                "proportion": 0.1, "ci_low": 0.01, "ci_high": 0.4, "mean": None, "median": None, "sd": None,
                "expected": None, "observed_expected": None}
    (read,) = wire.Decoder(schemas.INDICATOR_SNAPSHOT).decode(
        _written_with("rwe.outcomes.IndicatorSnapshot.v2.avsc", snapshot))
    assert read == {**snapshot, "provisional_numerator": None, "excluded_by_reason": {}}
