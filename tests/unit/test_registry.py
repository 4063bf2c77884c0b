"""The embedded schema registry and the engine's registry client, over real HTTP.

The client side is confluent-kafka's own SchemaRegistryClient and AvroSerializer, so
these tests also prove the engine reads what a standard Confluent producer writes.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from streams.embedded.registry import RegistryServer, compatibility_problems
from streams.errors import BrokerUnavailable, ConfigError
from streams.settings import Settings
from streams.wire import formats as wire
from streams.wire import schemas
from streams.wire.registry import (
    Registry,
    RegistryUnavailable,
    SchemaIncompatible,
    SchemaNotFound,
    decoder_for,
    encoder_for,
    schema_text,
    subject_for,
)

CE = schemas.CLINICAL_EVENT
V1_PATH = schemas.schemas_dir() / "history" / f"{CE}.v1.avsc"


@pytest.fixture(scope="module")
def server() -> Iterator[RegistryServer]:
    with RegistryServer() as srv:
        yield srv


@pytest.fixture
def client(server: RegistryServer) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": server.url}) as c:
        yield c


@pytest.fixture
def settings(server: RegistryServer) -> Settings:
    return Settings(mode="dev", schema_registry_url=server.url)


def http(server: RegistryServer, method: str, path: str, body: Any = None) -> tuple[int, Any, str]:
    """(status, JSON answer, content type) of one raw request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read()), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read()), exc.headers["Content-Type"]


def event(**changes: Any) -> dict[str, Any]:
    """A complete ClinicalEvent as plain data (timestamps in microseconds)."""
    record: dict[str, Any] = {
        "event_id": "e-1", "site_id": "site-a", "source_patient_id": "MRN-1",
        "patient_id_issuer": None, "encounter_id": "enc-1", "event_type": "LAB_RESULT",
        "event_time": 1_700_000_000_000_000, "recorded_time": 1_700_000_060_000_000,
        "time_zone": "Europe/Berlin", "code_system": "LOINC", "code": "2160-0", "value": 1.2,
        "unit": "mg/dL", "coded_value": None, "admission_type": None, "disposition": None, "birth_year": 1950,
        "sex": "FEMALE", "prom": None, "pseudonymised": False, "patient_name": None, "address": None, "note": None,
    }
    record.update(changes)
    return record


def v1_schema() -> dict[str, Any]:
    return wire._load_file(V1_PATH)


def current_with(*extra_fields: dict[str, Any]) -> dict[str, Any]:
    schema = json.loads(schema_text(CE))
    schema["fields"] = [*schema["fields"], *extra_fields]
    return schema


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- round trips


def test_register_and_fetch_by_id(server: RegistryServer) -> None:
    registry = Registry(server.url)
    schema_id = registry.register("roundtrip-value", CE)
    fetched = Registry(server.url).schema_by_id(schema_id)  # a fresh client: no cache
    assert fetched == schemas.raw_schema(CE)
    assert schemas.crc64_fingerprint(fetched) == schemas.crc64_fingerprint(schemas.raw_schema(CE))
    status, answer, content_type = http(server, "GET", f"/schemas/ids/{schema_id}")
    assert status == 200
    assert content_type == "application/vnd.schemaregistry.v1+json"
    assert json.loads(answer["schema"]) == fetched
    assert http(server, "GET", f"/schemas/ids/{schema_id}/schema")[1] == fetched


def test_reregistering_gives_the_same_id(server: RegistryServer, client: SchemaRegistryClient) -> None:
    first = Registry(server.url).register("again-value", CE)
    assert Registry(server.url).register("again-value", CE) == first
    # Ids are global per schema, whatever the JSON's key order or spacing.
    pretty = json.dumps(schemas.raw_schema(CE), indent=2)
    assert client.register_schema("again-value", Schema(pretty, "AVRO")) == first
    assert client.register_schema("other-value", Schema(pretty, "AVRO")) == first
    assert http(server, "GET", "/subjects/again-value/versions") == (
        200, [1], "application/vnd.schemaregistry.v1+json")
    found = client.lookup_schema("again-value", Schema(pretty, "AVRO"))
    assert (found.schema_id, found.version) == (first, 1)
    assert set(http(server, "GET", f"/schemas/ids/{first}/subjects")[1]) >= {"again-value", "other-value"}


def test_confluent_framed_event_round_trips(settings: Settings) -> None:
    encoder = encoder_for(settings, CE, "rwe.events.raw")
    data = encoder.encode(event())
    assert data[:1] == b"\x00"
    schema_id = struct.unpack(">I", data[1:5])[0]
    assert schema_id == Registry(settings.schema_registry_url or "").register(
        subject_for("rwe.events.raw"), CE)
    assert decoder_for(settings, CE).decode(data) == [event()]


def test_without_registry_url_single_object_is_used() -> None:
    plain = Settings(mode="dev")
    data = encoder_for(plain, CE, "rwe.events.raw").encode(event())
    assert data[:2] == wire.SINGLE_OBJECT_MAGIC
    decoder = decoder_for(plain, CE)
    assert decoder.decode(data) == [event()]
    with pytest.raises(wire.DecodeError) as info:
        decoder.decode(b"\x00\x00\x00\x00\x01\x02")
    assert info.value.reason == "unknown_schema"


def test_older_version_then_current_is_backward_compatible(
        server: RegistryServer, client: SchemaRegistryClient, settings: Settings) -> None:
    topic = "evolve"
    old = v1_schema()
    v1_id = client.register_schema(subject_for(topic), Schema(json.dumps(old), "AVRO"))
    current_id = Registry(server.url).register(subject_for(topic), CE)  # BACKWARD: allowed
    assert current_id != v1_id
    assert http(server, "GET", f"/subjects/{subject_for(topic)}/versions")[1] == [1, 2]

    v1_record = {k: v for k, v in event().items() if k != "patient_id_issuer"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old), v1_record)
    framed = b"\x00" + struct.pack(">I", v1_id) + body.getvalue()

    decoded = decoder_for(settings, CE).decode(framed)
    assert decoded == [event(patient_id_issuer=None)]


def test_incompatible_change_is_rejected_with_409(
        server: RegistryServer, client: SchemaRegistryClient) -> None:
    subject = "strict-value"
    Registry(server.url).register(subject, CE)
    breaking = current_with({"name": "ward", "type": "string"})
    status, answer, _ = http(server, "POST", f"/subjects/{subject}/versions",
                             {"schema": json.dumps(breaking)})
    assert status == 409
    assert answer["error_code"] == 409
    assert "ward" in answer["message"]
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema(subject, Schema(json.dumps(breaking), "AVRO"))
    assert info.value.http_status_code == 409
    assert http(server, "GET", f"/subjects/{subject}/versions")[1] == [1]

    # With a default the same field is a compatible change.
    fine = current_with({"name": "ward", "type": "string", "default": ""})
    assert client.register_schema(subject, Schema(json.dumps(fine), "AVRO")) > 0

    # NONE switches the check off for the subject.
    http(server, "PUT", "/config/loose-value", {"compatibility": "NONE"})
    Registry(server.url).register("loose-value", CE)
    assert client.register_schema("loose-value", Schema(json.dumps(breaking), "AVRO")) > 0


def test_engine_schema_rejected_by_registry_is_one_line(server: RegistryServer,
                                                        client: SchemaRegistryClient) -> None:
    other = {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}
    client.register_schema("unrelated-value", Schema(json.dumps(other), "AVRO"))
    with pytest.raises(SchemaIncompatible) as info:
        Registry(server.url).register("unrelated-value", CE)
    assert isinstance(info.value, ConfigError)
    assert "\n" not in str(info.value)
    assert server.url in str(info.value)
    assert "NAME_MISMATCH" in str(info.value)


def test_unknown_id_is_unknown_schema(settings: Settings) -> None:
    decoder = decoder_for(settings, CE)
    with pytest.raises(wire.DecodeError) as info:
        decoder.decode(b"\x00" + struct.pack(">I", 987654) + b"\x02a")
    assert info.value.reason == "unknown_schema"
    with pytest.raises(SchemaNotFound):
        Registry(settings.schema_registry_url or "").schema_by_id(987654)


def test_wrong_record_behind_an_id_is_wrong_schema(client: SchemaRegistryClient,
                                                   settings: Settings) -> None:
    other = {"type": "record", "name": "Other", "namespace": "x",
             "fields": [{"name": "n", "type": "int"}]}
    other_id = client.register_schema("other-record-value", Schema(json.dumps(other), "AVRO"))
    with pytest.raises(wire.DecodeError) as info:
        decoder_for(settings, CE).decode(b"\x00" + struct.pack(">I", other_id) + b"\x02")
    assert info.value.reason == "wrong_schema"


def test_compatibility_endpoint(server: RegistryServer, client: SchemaRegistryClient) -> None:
    subject = "probe-value"
    client.register_schema(subject, Schema(json.dumps(v1_schema()), "AVRO"))
    current = Schema(schema_text(CE), "AVRO")
    breaking = Schema(json.dumps(current_with({"name": "ward", "type": "string"})), "AVRO")
    assert client.test_compatibility(subject, current) is True
    assert client.test_compatibility(subject, breaking) is False
    assert client.test_compatibility(subject, current, version=1) is True
    status, answer, _ = http(server, "POST",
                             f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                             {"schema": breaking.schema_str})
    assert status == 200
    assert answer["is_compatible"] is False
    assert any("ward" in m for m in answer["messages"])
    assert http(server, "POST", f"/compatibility/subjects/{subject}/versions",
                {"schema": current.schema_str})[1] == {"is_compatible": True}
    assert http(server, "POST", "/compatibility/subjects/nobody-value/versions/latest",
                {"schema": current.schema_str})[1]["error_code"] == 40401


def test_both_framings_through_one_decoder(settings: Settings) -> None:
    decoder = decoder_for(settings, CE)
    single = wire.Encoder(CE).encode(event(event_id="so"))
    confluent = encoder_for(settings, CE, "rwe.events.mixed").encode(event(event_id="cf"))
    assert single[:2] == wire.SINGLE_OBJECT_MAGIC and confluent[:1] == b"\x00"
    assert decoder.decode(single) == [event(event_id="so")]
    assert decoder.decode(confluent) == [event(event_id="cf")]
    assert decoder.decode(single) + decoder.decode(confluent) == [event(event_id="so"),
                                                                  event(event_id="cf")]


# --------------------------------------------------------------------------- interoperability


def test_confluent_avro_serializer_output_decodes(client: SchemaRegistryClient,
                                                  settings: Settings) -> None:
    """What a hospital's standard Confluent producer writes, the engine reads."""
    topic = "hospital.feed"
    hospital_schema = json.dumps(schemas.raw_schema(CE), indent=2)  # their own formatting
    serializer = AvroSerializer(client, hospital_schema)  # auto-registers, TopicNameStrategy
    ctx = SerializationContext(topic, MessageField.VALUE)
    data = serializer(event(event_id="hospital-1"), ctx)
    assert data is not None and data[:1] == b"\x00"
    assert struct.unpack(">I", data[1:5])[0] == Registry(settings.schema_registry_url or "").register(
        subject_for(topic), CE)
    assert decoder_for(settings, CE).decode(data) == [event(event_id="hospital-1")]

    # And the other way: Confluent's deserializer reads what the engine writes.
    ours = encoder_for(settings, CE, topic).encode(event(event_id="engine-1"))
    read = AvroDeserializer(client)(ours, ctx)
    assert isinstance(read, dict)
    assert (read["event_id"], read["event_type"], read["value"]) == ("engine-1", "LAB_RESULT", 1.2)


def test_serializer_with_older_schema_decodes_with_current_reader(
        client: SchemaRegistryClient, settings: Settings) -> None:
    topic = "hospital.legacy"
    serializer = AvroSerializer(client, json.dumps(v1_schema()))
    v1_record = {k: v for k, v in event().items() if k != "patient_id_issuer"}
    data = serializer(v1_record, SerializationContext(topic, MessageField.VALUE))
    assert data is not None
    assert decoder_for(settings, CE).decode(data) == [event()]


# --------------------------------------------------------------------------- server API


def test_server_errors_use_confluent_shape(server: RegistryServer) -> None:
    assert http(server, "GET", "/subjects/missing-value/versions")[:2] == (
        404, {"error_code": 40401, "message": "Subject 'missing-value' not found."})
    status, answer, _ = http(server, "GET", "/schemas/ids/424242")
    assert (status, answer["error_code"]) == (404, 40403)
    status, answer, _ = http(server, "POST", "/subjects/bad-value/versions",
                             {"schema": '{"type": "recrod", "name": "X"}'})
    assert (status, answer["error_code"]) == (422, 42201)
    status, answer, _ = http(server, "POST", "/subjects/bad-value/versions", {"schema": "{not json"})
    assert (status, answer["error_code"]) == (422, 42201)
    status, answer, _ = http(server, "POST", "/subjects/bad-value/versions",
                             {"schema": '"string"', "schemaType": "PROTOBUF"})
    assert (status, answer["error_code"]) == (422, 42201)
    status, answer, _ = http(server, "PUT", "/config", {"compatibility": "SIDEWAYS"})
    assert (status, answer["error_code"]) == (422, 42203)
    status, answer, _ = http(server, "GET", "/subjects/roundtrip-value/versions/zero")
    assert (status, answer["error_code"]) == (422, 42202)


def test_subjects_versions_config_and_delete(server: RegistryServer,
                                             client: SchemaRegistryClient) -> None:
    subject = "lifecycle-value"
    first = client.register_schema(subject, Schema(json.dumps(v1_schema()), "AVRO"))
    second = client.register_schema(subject, Schema(schema_text(CE), "AVRO"))
    assert subject in client.get_subjects()
    assert client.get_versions(subject) == [1, 2]
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, second)
    assert client.get_version(subject, 1).schema_id == first
    assert http(server, "GET", f"/subjects/{subject}/versions/1/schema")[1] == json.loads(
        json.dumps(v1_schema()))

    assert client.get_compatibility() == "BACKWARD"
    status, answer, _ = http(server, "GET", f"/config/{subject}")
    assert (status, answer["error_code"]) == (404, 40408)
    assert http(server, "GET", f"/config/{subject}?defaultToGlobal=true")[1] == {
        "compatibilityLevel": "BACKWARD"}
    assert client.set_compatibility(subject, "full_transitive") == {"compatibility": "FULL_TRANSITIVE"}
    assert client.get_compatibility(subject) == "FULL_TRANSITIVE"

    assert client.delete_subject(subject) == [1, 2]
    assert subject not in client.get_subjects()
    # Ids stay resolvable: records written before the delete must still decode.
    assert json.loads(http(server, "GET", f"/schemas/ids/{first}")[1]["schema"])["name"] == CE


def test_subject_names_are_url_decoded(server: RegistryServer, client: SchemaRegistryClient) -> None:
    subject = "site a/feed:1-value"
    schema_id = client.register_schema(subject, Schema(schema_text(CE), "AVRO"))
    assert subject in client.get_subjects()
    assert client.get_latest_version(subject).schema_id == schema_id


def test_busy_port_is_a_one_line_config_error(server: RegistryServer) -> None:
    with pytest.raises(ConfigError, match=rf"^port {server.port} is in use"):
        RegistryServer(port=server.port).start()


def test_server_stops_cleanly_and_ids_survive_a_restart() -> None:
    srv = RegistryServer()
    with srv, Registry(srv.url) as registry:
        url = srv.url
        before = registry.register("restart-value", CE)
    srv.stop()  # twice is fine
    with Registry(url, {"max.retries": 0}) as gone, pytest.raises(RegistryUnavailable):
        gone.check()
    # A fresh, empty registry gives the schema the same id, whatever was registered first.
    with RegistryServer() as again, Registry(again.url) as registry:
        registry.register("something-else-value", "rwe.events.DeadLetter")
        assert registry.register("restart-value", CE) == before


# --------------------------------------------------------------------------- client errors


def test_unreachable_registry_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    registry = Registry(url, {"max.retries": 0})
    for call in (registry.check, lambda: registry.register("x-value", CE),
                 lambda: registry.schema_by_id(1)):
        with pytest.raises(BrokerUnavailable) as info:
            call()
        assert url in str(info.value)
        assert "\n" not in str(info.value)


def test_credentials_in_the_url_never_show() -> None:
    url = f"http://rwe:s3cret@127.0.0.1:{free_port()}"
    with Registry(url, {"max.retries": 0}) as registry, pytest.raises(RegistryUnavailable) as info:
        registry.check()
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


@pytest.mark.parametrize("url", ["localhost:8081", "ftp://registry", "http://", ""])
def test_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="RWE_SCHEMA_REGISTRY_URL"):
        Registry(url)


# --------------------------------------------------------------------------- resolution rules


def record(*fields: dict[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


def f(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "enum", "name": "E", "symbols": list(symbols)}
    if default is not None:
        schema["default"] = default
    return schema


@pytest.mark.parametrize(("reader", "writer", "ok"), [
    ("long", "int", True), ("float", "int", True), ("double", "long", True),
    ("double", "float", True), ("int", "long", False), ("float", "double", False),
    ("bytes", "string", True), ("string", "bytes", True), ("string", "int", False),
    ({"type": "long", "logicalType": "timestamp-micros"}, "long", True),
    (["null", "string"], "string", True), ("string", ["null", "string"], False),
    (["null", "long"], ["null", "int"], True), (["null", "int"], ["null", "long"], False),
    (["null", "string", "int"], ["int", "string"], True),
    (enum("A", "B", "C"), enum("A", "B"), True), (enum("A"), enum("A", "B"), False),
    (enum("A", "U", default="U"), enum("A", "B"), True),
    ({"type": "array", "items": "long"}, {"type": "array", "items": "int"}, True),
    ({"type": "map", "values": "int"}, {"type": "map", "values": "long"}, False),
    ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 4}, True),
    ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 8}, False),
    (record(f("a", "int")), record(f("a", "int"), f("b", "string")), True),  # removed field
    (record(f("a", "int"), f("b", "string")), record(f("a", "int")), False),  # added, no default
    (record(f("a", "int"), f("b", "string", default="")), record(f("a", "int")), True),
    (record(f("a", "long")), record(f("a", "int")), True),
    (record(f("a", "int"), name="R"), record(f("a", "int"), name="S"), False),
    ({**record(f("a", "int"), name="R"), "aliases": ["S"]}, record(f("a", "int"), name="S"), True),
    (record(f("new", "int", aliases=["old"])), record(f("old", "int")), True),
    (record(f("a", "int"), name="ns1.R"), record(f("a", "int"), name="ns2.R"), True),
])
def test_resolution_rules(reader: Any, writer: Any, ok: bool) -> None:
    problems = compatibility_problems(reader, writer)
    assert (not problems) == ok, problems


def test_resolution_follows_named_types_and_recursion() -> None:
    node = {"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "Node"], "default": None}]}
    wider = json.loads(json.dumps(node).replace('"int"', '"long"'))
    assert compatibility_problems(wider, node) == []
    assert compatibility_problems(node, wider) != []
    assert compatibility_problems(schemas.raw_schema(CE), v1_schema()) == []
    assert compatibility_problems(v1_schema(), schemas.raw_schema(CE)) == []


# The checker against fastavro's actual resolution: whenever it says a reader can read
# a writer, every record of the writer decodes with the reader.

_PRIMS = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_DEFAULTS: dict[str, Any] = {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0,
                             "double": 0.0, "bytes": "", "string": ""}


@st.composite
def field_types(draw: st.DrawFn, name: str) -> tuple[Any, Any]:
    """(type, a valid default) of a field called ``name``."""
    kind = draw(st.sampled_from(["prim", "optional", "enum", "array", "map"]))
    prim = draw(st.sampled_from(_PRIMS))
    if kind == "prim":
        return prim, _DEFAULTS[prim]
    if kind == "optional" and prim != "null":
        return ["null", prim], None
    if kind == "enum":
        symbols = draw(st.lists(st.sampled_from("XYZ"), min_size=1, max_size=3, unique=True))
        schema: dict[str, Any] = {"type": "enum", "name": f"E_{name}", "symbols": symbols}
        if draw(st.booleans()):
            schema["default"] = symbols[0]
        return schema, symbols[0]
    if kind == "array":
        return {"type": "array", "items": prim}, []
    return {"type": "map", "values": prim}, {}


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True))
    fields = []
    for name in names:
        type_, default = draw(field_types(name))
        field: dict[str, Any] = {"name": name, "type": type_}
        if draw(st.booleans()):
            field["default"] = default
        fields.append(field)
    return {"type": "record", "name": "R", "fields": fields}


def data_for(schema: Any) -> st.SearchStrategy[Any]:
    if isinstance(schema, list):
        return st.one_of(*(data_for(branch) for branch in schema))
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            return st.fixed_dictionaries({f["name"]: data_for(f["type"]) for f in schema["fields"]})
        if kind == "enum":
            return st.sampled_from(schema["symbols"])
        if kind == "array":
            return st.lists(data_for(schema["items"]), max_size=2)
        return st.dictionaries(st.text(max_size=2), data_for(schema["values"]), max_size=2)
    return {
        "null": st.none(), "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1), "long": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(width=32, allow_nan=False), "double": st.floats(allow_nan=False),
        # Avro promotes bytes to string, which presumes UTF-8 content: bytes that are not
        # UTF-8 cannot be read as a string under any schema, so the data stays UTF-8.
        "bytes": st.text(max_size=3).map(str.encode), "string": st.text(max_size=3),
    }[schema]


@hypothesis_settings(max_examples=400, deadline=None)
@given(reader=records(), writer=records(), data=st.data())
def test_compatible_means_fastavro_reads_it(reader: dict[str, Any], writer: dict[str, Any],
                                            data: st.DataObject) -> None:
    if compatibility_problems(reader, writer):
        return
    datum = data.draw(data_for(writer))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), datum)
    buf.seek(0)
    fastavro.schemaless_reader(buf, fastavro.parse_schema(writer), fastavro.parse_schema(reader))


def test_a_registry_outage_stops_decoding_instead_of_dead_lettering() -> None:
    from streams.wire import formats as wire

    srv = RegistryServer()
    with srv, Registry(srv.url) as registry:
        url = srv.url
        schema_id = registry.register("outage-value", CE)
    data = wire.Encoder(CE, wire.CONFLUENT, schema_id=schema_id).encode(event())
    gone = Registry(url, {"max.retries": 0})
    decoder = wire.Decoder(CE, registry_lookup=gone.schema_by_id)
    with pytest.raises(BrokerUnavailable):
        decoder.decode(data)
