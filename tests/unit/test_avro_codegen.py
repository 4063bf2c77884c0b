"""The compiled Avro codecs write exactly fastavro's bytes and read exactly what it reads,
for random records of every schema: both the precompiled ones (streams/wire/codecs.py) and
those generated at run time for any other schema."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.wire import codecs as avro_codecs
from streams.wire import codegen as avro_codegen
from streams.wire import primitives, schemas
from streams.wire import writer as avro_writer

SCHEMAS = sorted({*schemas.PRECOMPILED, schemas.DEAD_LETTER, schemas.ALERT})
LONGS = st.integers(-(2**63), 2**63 - 1)
INTS = st.integers(-(2**31), 2**31 - 1)
NORMALISED_SAMPLE: dict[str, Any] = {
    "event_id": "e-1", "site_id": "FI-HUS", "region": "FI-18", "country": "FI", "patient_pseudonym": "p" * 32,
    "encounter_pseudonym": None, "event_type": "LAB_RESULT", "event_time": 1735728226692284,
    "recorded_time": 1735737249595235, "ingest_time": 1795624197357710, "code_system": "LOINC", "code": "33762-6",
    "concepts": ["nt_probnp"], "mapped": True, "value": 1234.5, "unit": "pg/mL", "coded_value": None,
    "admission_type": None, "disposition": None, "birth_year": 1952, "sex": "MALE", "prom": None,
    "code_map_version": "2026.11.1"}


def strategy(t: Any) -> st.SearchStrategy[Any]:
    if isinstance(t, list):
        return st.one_of(*[strategy(b) for b in t])
    if isinstance(t, dict):
        kind = t["type"]
        if kind == "record":
            return st.fixed_dictionaries({f["name"]: strategy(f["type"]) for f in t["fields"]})
        if kind == "enum":
            return st.sampled_from(t["symbols"])
        if kind == "array":
            return st.lists(strategy(t["items"]), max_size=4)
        if kind == "map":
            return st.dictionaries(st.text(max_size=8), strategy(t["values"]), max_size=4)
        return strategy(kind)
    return {"null": st.none(), "string": st.text(max_size=20), "long": LONGS, "int": INTS,
            "double": st.floats(allow_nan=False), "boolean": st.booleans(),
            "bytes": st.binary(max_size=20)}[t]


def schema_of(name: str, precompiled: bool) -> dict[str, Any]:
    """The schema as the engine has it, or a copy no precompiled codec matches (generated at run time)."""
    raw = schemas.raw_schema(name)
    if precompiled:
        return raw
    other = copy.deepcopy(raw)
    other["doc"] = f"{raw.get('doc', '')} (a variant)"
    assert avro_codegen.compile_encoder(other) is not avro_codegen.compile_encoder(raw)
    return other


@pytest.mark.parametrize("precompiled", [True, False], ids=["precompiled", "runtime"])
@pytest.mark.parametrize("name", SCHEMAS)
def test_fast_writer_matches_fastavro(name: str, precompiled: bool) -> None:
    raw = schema_of(name, precompiled)
    plain = schemas.parsed_plain(name)
    body = avro_codegen.compile_encoder(raw)

    @settings(max_examples=150, deadline=None)
    @given(strategy(schemas._strip_logical_types(raw)))
    def check(record: dict[str, Any]) -> None:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, plain, record)
        assert body(record) == buf.getvalue()

    check()


@pytest.mark.parametrize("precompiled", [True, False], ids=["precompiled", "runtime"])
@pytest.mark.parametrize("name", SCHEMAS)
def test_compiled_decoder_reads_what_fastavro_reads(name: str, precompiled: bool) -> None:
    raw = schema_of(name, precompiled)
    plain = schemas.parsed_plain(name)
    decode = avro_codegen.compile_decoder(raw)

    @settings(max_examples=150, deadline=None)
    @given(strategy(schemas._strip_logical_types(raw)))
    def check(record: dict[str, Any]) -> None:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, plain, record)
        data = b"\x07" + buf.getvalue()  # decoding starts where it is told to
        assert decode(data, 1) == (fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), plain, None), len(data))

    check()


def test_the_precompiled_codecs_are_generated_from_the_current_schemas() -> None:
    module = Path(schemas.__file__).with_name("codecs.py")
    expected = avro_codegen.module_source({name: schemas.raw_schema(name) for name in schemas.PRECOMPILED})
    assert module.read_text() == expected, "a schema changed: run python -m streams.wire.codegen"
    for name in schemas.PRECOMPILED:
        codecs = avro_codecs.CODECS[avro_codegen.schema_key(schemas.raw_schema(name))]
        assert avro_codegen.compile_encoder(schemas.raw_schema(name)) is codecs["encode"]
        assert avro_codegen.compile_decoder(schemas.raw_schema(name)) is codecs["decode"]


@pytest.mark.parametrize("value", [0, 1, -1, 63, -64, 8191, 2**31, -(2**40), 2**63 - 1, -(2**63)])
def test_long_round_trip(value: int) -> None:
    data = primitives.zigzag(value) + b"rest"
    assert primitives.read_long(data, 0) == (value, len(data) - 4)


def test_compiled_decoder_rejects_truncated_and_overlong_data() -> None:
    decode = avro_codegen.compile_decoder(schemas.raw_schema(schemas.NORMALISED_EVENT))
    good = avro_writer.encoder(schemas.NORMALISED_EVENT, framed=False)(NORMALISED_SAMPLE)
    assert decode(good, 0)[0] == NORMALISED_SAMPLE
    for cut in (1, len(good) // 2, len(good) - 1):
        with pytest.raises((ValueError, IndexError)):
            decode(good[:cut], 0)
    with pytest.raises(ValueError, match="run past the end"):
        decode(primitives.zigzag(1000) + b"abc", 0)  # a string longer than the data


def test_a_record_given_as_a_tuple_of_its_fields_encodes_as_the_dict_does() -> None:
    encode = avro_writer.encoder("rwe.internal.AscertainDelta", framed=False)
    fact = {"time": 1, "kind": "ADMISSION", "site": "FI-HUS", "ref": None, "concepts": ["heart_failure"],
            "value": 2.5, "attr": "EMERGENCY", "key": -(2**63)}
    published = {"id": "x:00", "signature": 5, "site": "FI-HUS", "index_time": 1, "horizon_end": 2}
    change = {"pseudonym": "p", "evicted": False, "birth_year": 1950, "male": True}
    packed = {"packed_facts": b"\x00\x01", "packed_published": b"", "packed_revisions": b""}
    as_dicts = {"snapshot": False, "max_seen": 9, "strings": ["a"],
                "patients": [{**change, "facts": [fact], "published": [published], **packed}]}
    as_tuples = {"snapshot": False, "max_seen": 9, "strings": ["a"],
                 "patients": [(*change.values(), [tuple(fact.values())], [tuple(published.values())],
                               *packed.values())]}
    assert encode(as_tuples) == encode(as_dicts)


def test_a_field_reader_reads_one_field_without_the_rest() -> None:
    read_status = avro_codegen.compile_field_reader(schemas.raw_schema(schemas.OUTCOME_OBSERVATION), "status")
    record = {"observation_id": "o", "indicator": "hf_mortality_30d", "area": "cardiovascular",
              "catalogue_version": "v", "site_id": "FI-HUS", "region": "FI-18", "country": "FI", "status": "FINAL",
              "index_time": 1, "horizon_end": 2, "closed_time": None, "outcome": 1, "value": None, "expected": 0.1,
              "exclusion": None, "covariates": {}}
    body = avro_writer.encoder(schemas.OUTCOME_OBSERVATION, framed=False)(record)
    assert read_status(body, 0) == "FINAL"
    with pytest.raises((ValueError, IndexError)):
        read_status(body[:30], 0)  # cut inside the fields before status
    with pytest.raises(KeyError):
        avro_codegen.compile_field_reader(schemas.raw_schema(schemas.OUTCOME_OBSERVATION), "nope")


def test_cached_string_encodings_match_fastavro_for_repeated_and_unique_values() -> None:
    # Past STRING_CACHE distinct values a field stops caching; hits and misses must both be exact.
    encode = avro_codegen.compile_encoder(schemas.raw_schema("rwe.internal.DedupeDelta"))
    plain = schemas.parsed_plain("rwe.internal.DedupeDelta")
    for i in range(3 * avro_codegen.STRING_CACHE):
        record = {"snapshot": False, "watermark": i, "entries": [
            {"site_id": ["FI-HUS", "NL-AMC", "DE-CHA"][i % 3], "event_id": f"event-{i}", "event_time": i, "digest": -i},
            {"site_id": "FI-HUS", "event_id": "ümlaut-é", "event_time": 0, "digest": 0}]}
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, plain, record)
        assert encode(record) == buf.getvalue()
