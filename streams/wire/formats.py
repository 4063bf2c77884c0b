"""Wire formats on the engine's topics, and a decoder that accepts all of them.

A message value is one of:

* Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint (little
  endian) + body. Writer schemas are resolved against ``schemas/`` and its history.
* Confluent framing: ``00`` + 4-byte big-endian schema id + body; the id is resolved
  through a Confluent-compatible schema registry.
* An Avro object container (``Obj 01``): many records with the writer schema in the
  header. High-volume producers and backfills send these: one Kafka message then
  carries hundreds of events, which is what makes replays fast.

Every failure is a :class:`DecodeError` with a stable reason code; no other
exception escapes :meth:`Decoder.decode`, whatever the bytes.
"""

from __future__ import annotations

import functools
import io
import json
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fastavro

from streams.errors import BrokerUnavailable, ConfigError
from streams.vocabulary.dead_letters import Reason
from streams.wire import codegen as avro_codegen
from streams.wire import schemas
from streams.wire import writer as avro_writer

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
CONTAINER_MAGIC = b"Obj\x01"

SINGLE_OBJECT = "single-object"
CONFLUENT = "confluent"
FRAMINGS = (SINGLE_OBJECT, CONFLUENT)
NOT_PEEKED = object()


class DecodeError(Exception):
    """Bytes that cannot be read as a record of the expected schema."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SchemaStore:
    """Writer schemas by single-object fingerprint: current ones and history.

    Holds plain-parsed schemas (logical types stripped) for fast decoding.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory or schemas.schemas_dir()
        self._by_fingerprint: dict[bytes, tuple[str, Any]] = {}

    def add(self, schema: dict[str, Any]) -> bytes:
        """Register a writer schema; return its fingerprint."""
        fp = schemas.crc64_fingerprint(schema)
        self._by_fingerprint[fp] = (str(schema["name"]), _parse_plain(schema))
        return fp

    def load_family(self, name: str) -> None:
        """Register the current schema ``name`` and every historical version of it."""
        self.add(schemas.raw_schema(name))
        history = self._directory / "history"
        for path in sorted(history.glob(f"{name}.v*.avsc")):
            self.add(_load_file(path))

    def lookup(self, fp: bytes) -> tuple[str, Any] | None:
        return self._by_fingerprint.get(fp)


def _load_file(path: Path) -> dict[str, Any]:
    """A historical schema file, with named types of the current folder inlined."""
    expanded: Any = fastavro.schema.expand_schema(_inline(json.loads(path.read_text())))
    return dict(expanded)


_TYPE_KEYS = ("type", "items", "values", "fields")


def _inline(node: Any) -> Any:
    if isinstance(node, str) and node.startswith("rwe."):
        return schemas.raw_schema(node)
    if isinstance(node, dict):
        return {k: (_inline(v) if k in _TYPE_KEYS else v) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v) for v in node]
    return node


def _parse_plain(schema: dict[str, Any]) -> Any:
    return fastavro.parse_schema(schemas._strip_logical_types(schema))


SchemaById = Callable[[int], dict[str, Any]]


class Decoder:
    """Decodes any of the engine's wire formats into plain dicts of one reader schema.

    ``registry_lookup`` resolves Confluent schema ids (None: Confluent-framed
    messages are rejected as ``unknown_schema``).
    """

    def __init__(
        self,
        reader_name: str,
        store: SchemaStore | None = None,
        registry_lookup: SchemaById | None = None,
    ) -> None:
        self.reader_name = reader_name
        self._reader = schemas.parsed_plain(reader_name)
        self._fast = _fast_decoder(reader_name)
        self._reader_fp = schemas.crc64_fingerprint(schemas.raw_schema(reader_name))
        self._reader_canonical = schemas.canonical_form(schemas.raw_schema(reader_name))
        self._store = store or SchemaStore()
        self._store.load_family(reader_name)
        self._registry_lookup = registry_lookup
        self._by_id: dict[int, Any] = {}

    def decode(self, data: bytes) -> list[dict[str, Any]]:
        """Records in ``data``: one for a single record, many for a container."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(Reason.UNDECODABLE, "message has no value")
        data = bytes(data)
        try:
            if data[:2] == SINGLE_OBJECT_MAGIC:
                return [self._single_object(data)]
            if data[:4] == CONTAINER_MAGIC:
                return self._container(data)
            if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
                return [self._confluent(data)]
        except (DecodeError, BrokerUnavailable):
            raise  # an unreachable registry stops the stage; the batch is retried, not dead-lettered
        except Exception as exc:  # any failure inside fastavro is bad input
            raise DecodeError(Reason.UNDECODABLE, f"{type(exc).__name__}: {exc}"[:300]) from None
        raise DecodeError(Reason.UNDECODABLE, "unknown framing: expected C3 01, 00 or an Avro container")

    def peek(self, data: bytes, field: str) -> Any:
        """The top-level ``field`` of a single record in the reader's own schema, read without
        decoding the rest; ``NOT_PEEKED`` for anything else (decode it)."""
        if data[:2] != SINGLE_OBJECT_MAGIC or data[2:10] != self._reader_fp:
            return NOT_PEEKED
        try:
            return _field_reader(self.reader_name, field)(data, 10)
        except Exception:  # malformed: the full decode says why
            return NOT_PEEKED

    def _single_object(self, data: bytes) -> dict[str, Any]:
        if len(data) < 10:
            raise DecodeError(Reason.UNDECODABLE, "single-object header truncated")
        fp = data[2:10]
        if fp == self._reader_fp:
            writer = self._reader
        else:
            found = self._store.lookup(fp)
            if found is None:
                raise DecodeError(Reason.UNKNOWN_SCHEMA, f"no schema with fingerprint {fp.hex()}")
            name, writer = found
            self._check_name(name)
        return self._body(data, 10, writer)

    def _confluent(self, data: bytes) -> dict[str, Any]:
        (schema_id,) = struct.unpack(">I", data[1:5])
        writer = self._by_id.get(schema_id)
        if writer is None:
            if self._registry_lookup is None:
                raise DecodeError(Reason.UNKNOWN_SCHEMA, "Confluent-framed record but no schema registry configured")
            try:
                schema = self._registry_lookup(schema_id)
            except BrokerUnavailable:
                raise
            except Exception as exc:  # the registry does not know the id
                raise DecodeError(Reason.UNKNOWN_SCHEMA, f"schema id {schema_id}: {exc}"[:300]) from None
            self._check_name(str(schema.get("name", "")), schema.get("namespace"))
            writer = _parse_plain(schema)
            self._by_id[schema_id] = writer
        return self._body(data, 5, writer)

    def _body(self, data: bytes, start: int, writer: Any) -> dict[str, Any]:
        if writer is self._reader and self._fast is not None:
            fast, end = self._fast(data, start)
            if end != len(data):
                raise DecodeError(Reason.UNDECODABLE, f"{len(data) - end} trailing bytes after the record")
            return fast
        buf = io.BytesIO(data)
        buf.seek(start)
        reader = None if writer is self._reader else self._reader
        record = fastavro.schemaless_reader(buf, writer, reader)
        if buf.tell() != len(data):
            raise DecodeError(Reason.UNDECODABLE, f"{len(data) - buf.tell()} trailing bytes after the record")
        if not isinstance(record, dict):
            raise DecodeError(Reason.UNDECODABLE, "body is not a record")
        return record

    def _container(self, data: bytes) -> list[dict[str, Any]]:
        return list(read_container(io.BytesIO(data), self.reader_name))

    def _check_name(self, name: str, namespace: Any = None) -> None:
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        if full != self.reader_name:
            raise DecodeError(Reason.WRONG_SCHEMA, f"record is {full or 'unnamed'}, expected {self.reader_name}")


def read_container(fo: BinaryIO, reader_name: str) -> Iterator[dict[str, Any]]:
    """Records of an Avro object container as plain dicts of ``reader_name`` (timestamps as ints).

    Blocks are decoded with the writer schema stripped of logical types, so timestamps
    stay integer microseconds as on every other path; the writer must be a version of
    the reader's schema.
    """
    blocks = fastavro.block_reader(fo)
    writer_schema: Any = blocks.writer_schema
    if not isinstance(writer_schema, dict):
        raise DecodeError(Reason.WRONG_SCHEMA, "container schema is not a record")
    name = str(writer_schema.get("name", ""))
    namespace = writer_schema.get("namespace")
    full = name if "." in name or not namespace else f"{namespace}.{name}"
    if full != reader_name:
        raise DecodeError(Reason.WRONG_SCHEMA, f"container holds {full or 'unnamed'}, expected {reader_name}")
    writer = _parse_plain(writer_schema)
    same = schemas.canonical_form(writer_schema) == schemas.canonical_form(schemas.raw_schema(reader_name))
    reader = None if same else schemas.parsed_plain(reader_name)
    fast = _fast_decoder(reader_name) if same else None
    block: Any
    for block in blocks:
        buf = block.bytes_  # a BytesIO of the block, already decompressed
        if fast is not None:
            data, pos = buf.getvalue(), 0
            for _ in range(block.num_records):
                record, pos = fast(data, pos)
                yield record
            if pos != len(data):
                raise DecodeError(Reason.UNDECODABLE, "container block has trailing bytes")
            continue
        for _ in range(block.num_records):
            yield fastavro.schemaless_reader(buf, writer, reader)  # type: ignore[misc]
        if buf.tell() != len(buf.getbuffer()):
            raise DecodeError(Reason.UNDECODABLE, "container block has trailing bytes")


@functools.cache
def _field_reader(reader_name: str, field: str) -> Callable[[bytes, int], Any]:
    return avro_codegen.compile_field_reader(schemas.raw_schema(reader_name), field)


@functools.cache
def _fast_decoder(reader_name: str) -> Callable[[bytes, int], tuple[dict[str, Any], int]] | None:
    """The compiled decoder of records written with the reader's own schema, if it covers it."""
    try:
        return avro_codegen.compile_decoder(schemas.raw_schema(reader_name))
    except avro_codegen.Unsupported:
        return None


def read_container_file(path: Path, reader_name: str) -> Iterator[dict[str, Any]]:
    """Records of an Avro container file (see :func:`read_container`); a missing or foreign
    file is a one-line :class:`streams.errors.ConfigError`."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            yield from read_container(handle, reader_name)
        except (ValueError, DecodeError) as exc:
            kind = reader_name.rsplit(".", 1)[-1]
            raise ConfigError(f"{path} is not an Avro container of {kind}s: {exc}") from None


class Encoder:
    """Encodes plain dicts of one schema in single-object or Confluent framing."""

    def __init__(self, name: str, framing: str = SINGLE_OBJECT, schema_id: int | None = None) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        if framing == CONFLUENT and schema_id is None:
            raise ValueError("Confluent framing needs the schema id from the registry")
        self.name = name
        if framing == SINGLE_OBJECT:
            self._header = SINGLE_OBJECT_MAGIC + schemas.crc64_fingerprint(schemas.raw_schema(name))
        else:
            self._header = CONFLUENT_MAGIC + struct.pack(">I", schema_id)
        self._body = avro_writer.encoder(name, framed=False)

    def encode(self, record: dict[str, Any]) -> bytes:
        return self._header + self._body(record)


def encode_container(name: str, records: Iterable[dict[str, Any]], codec: str = "null") -> bytes:
    """An Avro object container of ``records`` (plain dicts), for batch messages and files."""
    buf = io.BytesIO()
    fastavro.writer(buf, schemas.parsed(name), records, codec=codec)
    return buf.getvalue()
