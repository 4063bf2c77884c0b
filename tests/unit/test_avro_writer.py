"""The fast Avro writer writes exactly fastavro's bytes, for random records of every schema."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import avro_writer, schemas

SCHEMAS = [schemas.CLINICAL_EVENT, schemas.NORMALISED_EVENT, schemas.DEAD_LETTER, schemas.OUTCOME_OBSERVATION,
           schemas.INDICATOR_SNAPSHOT, schemas.ALERT, "rwe.internal.DedupeDelta", "rwe.internal.AscertainDelta"]
LONGS = st.integers(-(2**63), 2**63 - 1)
INTS = st.integers(-(2**31), 2**31 - 1)


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


@pytest.mark.parametrize("name", SCHEMAS)
def test_fast_writer_matches_fastavro(name: str) -> None:
    raw = schemas.raw_schema(name)
    plain = schemas.parsed_plain(name)
    body = avro_writer.encoder(name, framed=False)

    @settings(max_examples=150, deadline=None)
    @given(strategy(schemas._strip_logical_types(raw)))
    def check(record: dict[str, Any]) -> None:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, plain, record)
        assert body(record) == buf.getvalue()

    check()
