"""A small Confluent Schema Registry: the embedded default and the tests' registry.

Speaks the subset of Confluent's REST API that producers, consumers and operators
use (confluent-kafka's ``SchemaRegistryClient`` and ``AvroSerializer``, curl), keeps
everything in memory and knows only Avro. Production deployments point
``RWE_SCHEMA_REGISTRY_URL`` at Confluent, Apicurio or Karapace instead; the engine's
client side does not know the difference.

Endpoints (all answer ``application/vnd.schemaregistry.v1+json``)::

    GET    /                                              {}
    GET    /schemas/types                                 ["AVRO"]
    GET    /schemas/ids/{id}                              {"schema": "..."}
    GET    /schemas/ids/{id}/schema                       the schema itself
    GET    /schemas/ids/{id}/subjects                     ["subject", ...]
    GET    /schemas/ids/{id}/versions                     [{"subject", "version"}, ...]
    GET    /subjects                                      ["subject", ...]
    POST   /subjects/{subject}                            look a schema up in a subject
    DELETE /subjects/{subject}                            [1, 2, ...] versions deleted
    GET    /subjects/{subject}/versions                   [1, 2, ...]
    POST   /subjects/{subject}/versions                   register: {"id": n}
    GET    /subjects/{subject}/versions/{version|latest}  {"subject", "version", "id", "schema"}
    GET    /subjects/{subject}/versions/{v}/schema        the schema itself
    DELETE /subjects/{subject}/versions/{v}               the version deleted
    GET    /config, PUT /config                           global compatibility (BACKWARD)
    GET|PUT|DELETE /config/{subject}                      subject compatibility
    POST   /compatibility/subjects/{subject}/versions[/{version|latest}]
                                                          {"is_compatible": bool}
    GET    /mode                                          {"mode": "READWRITE"}

Schema ids are global: one id per distinct schema (compared as JSON with key order
and whitespace ignored), whichever subject registers it; they survive deletes so old
records stay readable. Storage is in memory, but ids are derived from the schema
(31 bits of its SHA-256), not counted: after a restart the same schema gets the same
id again once re-registered, and an id never comes to mean a different schema.

Registration enforces the subject's compatibility level with Avro's schema resolution
rules (:func:`compatibility_problems`). Errors use Confluent's shape ``{"error_code": 40401, "message": "..."}``.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import signal
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import fastavro

from streams.errors import ConfigError

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
DEFAULT_PORT = 8081
DEFAULT_COMPATIBILITY = "BACKWARD"
LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
          "FULL", "FULL_TRANSITIVE")
MAX_BODY = 16 * 1024 * 1024

# Confluent's error codes.
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_LEVEL_CONFIG_NOT_FOUND = 40408
INCOMPATIBLE = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY_LEVEL = 42203


class RegistryHTTPError(Exception):
    """An error answer: HTTP status, Confluent error code and message."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


class InvalidSchema(ValueError):
    """Text that is not a valid Avro schema."""


# --------------------------------------------------------------------------- Avro resolution

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# writer type -> reader types that can read it (Avro spec, "Schema Resolution").
_PROMOTIONS = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


@dataclass(eq=False)
class _Field:
    name: str
    type: _Node
    has_default: bool
    aliases: tuple[str, ...] = ()


@dataclass(eq=False)
class _Node:
    """One resolved schema node; named types are shared objects, so recursion works."""

    kind: str  # a primitive, "record", "enum", "fixed", "array", "map" or "union"
    name: str = ""  # full name of named types
    aliases: tuple[str, ...] = ()
    fields: list[_Field] = field(default_factory=list)
    symbols: tuple[str, ...] = ()
    enum_default: str | None = None
    size: int = 0
    child: _Node | None = None  # array items, map values
    branches: list[_Node] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.kind} {self.name}" if self.name else self.kind


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class _Parser:
    def __init__(self) -> None:
        self.names: dict[str, _Node] = {}

    def parse(self, node: Any, ns: str = "") -> _Node:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return _Node(node)
            for candidate in (_full_name(node, ns), node):
                if candidate in self.names:
                    return self.names[candidate]
            raise InvalidSchema(f"unknown type {node!r}")
        if isinstance(node, list):
            branches = [self.parse(b, ns) for b in node]
            if any(b.kind == "union" for b in branches):
                raise InvalidSchema("a union may not directly contain another union")
            return _Node("union", branches=branches)
        if not isinstance(node, dict):
            raise InvalidSchema(f"a schema is a string, array or object, not {json.dumps(node)}")
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            return self._named(node, "record" if kind == "error" else str(kind), ns)
        if kind == "array":
            return _Node("array", child=self.parse(self._require(node, "items"), ns))
        if kind == "map":
            return _Node("map", child=self.parse(self._require(node, "values"), ns))
        if kind is None:
            raise InvalidSchema("schema object has no \"type\"")
        return self.parse(kind, ns)  # {"type": "long", "logicalType": ...} or a wrapped reference

    @staticmethod
    def _require(node: dict[str, Any], key: str) -> Any:
        if key not in node:
            raise InvalidSchema(f"{node.get('type')} schema has no {key!r}")
        return node[key]

    def _named(self, node: dict[str, Any], kind: str, ns: str) -> _Node:
        name = node.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidSchema(f"{kind} has no name")
        namespace = node.get("namespace", ns)
        if not isinstance(namespace, str):
            raise InvalidSchema(f"namespace of {name} is not a string")
        full = _full_name(name, namespace)
        inner_ns = full.rsplit(".", 1)[0] if "." in full else ""
        if full in self.names:
            raise InvalidSchema(f"{full} is defined twice")
        aliases = node.get("aliases", [])
        result = _Node(kind, name=full,
                       aliases=tuple(_full_name(str(a), inner_ns) for a in aliases))
        self.names[full] = result  # before the fields, so a record may refer to itself
        if kind == "record":
            fields = self._require(node, "fields")
            if not isinstance(fields, list):
                raise InvalidSchema(f"fields of {full} is not an array")
            for f in fields:
                if not isinstance(f, dict) or not isinstance(f.get("name"), str) or "type" not in f:
                    raise InvalidSchema(f"a field of {full} lacks a name or type")
                field_type = self.parse(f["type"], inner_ns)
                field_aliases = tuple(str(a) for a in f.get("aliases", []))
                result.fields.append(_Field(f["name"], field_type, "default" in f, field_aliases))
        elif kind == "enum":
            symbols = self._require(node, "symbols")
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                raise InvalidSchema(f"symbols of {full} must be an array of strings")
            result.symbols = tuple(symbols)
            default = node.get("default")
            result.enum_default = default if isinstance(default, str) else None
        else:
            size = self._require(node, "size")
            if not isinstance(size, int):
                raise InvalidSchema(f"size of {full} must be an integer")
            result.size = size
        return result


def parse(schema: Any) -> _Node:
    """Resolved form of a schema given as parsed JSON; raises :class:`InvalidSchema`."""
    return _Parser().parse(schema)


class _Checker:
    def __init__(self) -> None:
        self._in_progress: set[tuple[int, int]] = set()

    def check(self, reader: _Node, writer: _Node, path: str) -> list[str]:
        if writer.kind == "union":
            problems: list[str] = []
            for i, branch in enumerate(writer.branches):
                where = path if reader.kind == "union" else f"{path}/{i}"
                problems += self.check(reader, branch, where)
            return problems
        if reader.kind == "union":
            for branch in reader.branches:
                if not self.check(branch, writer, path):
                    return []
            return [f"MISSING_UNION_BRANCH at {path}: the reader's union has no branch that can "
                    f"read the writer's {writer.describe()}"]
        if writer.kind in _PRIMITIVES or reader.kind in _PRIMITIVES or reader.kind != writer.kind:
            if reader.kind == writer.kind or reader.kind in _PROMOTIONS.get(writer.kind, ()):
                return []
            return [f"TYPE_MISMATCH at {path}: the reader's {reader.describe()} cannot read "
                    f"the writer's {writer.describe()}"]
        if reader.kind in ("array", "map"):
            assert reader.child is not None and writer.child is not None
            where = f"{path}/{'items' if reader.kind == 'array' else 'values'}"
            return self.check(reader.child, writer.child, where)
        if _short(reader.name) != _short(writer.name) and writer.name not in reader.aliases:
            return [f"NAME_MISMATCH at {path}: the reader's {reader.describe()} is not the "
                    f"writer's {writer.name}"]
        if reader.kind == "fixed":
            if reader.size != writer.size:
                return [f"FIXED_SIZE_MISMATCH at {path}: {reader.name} is {reader.size} bytes "
                        f"in the reader, {writer.size} in the writer"]
            return []
        if reader.kind == "enum":
            missing = [s for s in writer.symbols if s not in reader.symbols]
            if missing and reader.enum_default is None:
                return [f"MISSING_ENUM_SYMBOLS at {path}: the reader's {reader.name} lacks "
                        f"{', '.join(missing)} and has no default"]
            return []
        return self._record(reader, writer, path)

    def _record(self, reader: _Node, writer: _Node, path: str) -> list[str]:
        key = (id(reader), id(writer))
        if key in self._in_progress:  # recursive type: assume it holds, the outer check decides
            return []
        self._in_progress.add(key)
        try:
            by_name = {f.name: f for f in writer.fields}
            problems: list[str] = []
            for i, rf in enumerate(reader.fields):
                wf = by_name.get(rf.name)
                if wf is None:
                    wf = next((by_name[a] for a in rf.aliases if a in by_name), None)
                if wf is None:
                    if not rf.has_default:
                        problems.append(
                            f"READER_FIELD_MISSING_DEFAULT_VALUE at {path}/fields/{i}: field "
                            f"{rf.name!r} of {reader.name} is not in the writer's schema and has "
                            "no default")
                else:
                    problems += self.check(rf.type, wf.type, f"{path}/fields/{i}/type")
            return problems
        finally:
            self._in_progress.discard(key)


def compatibility_problems(reader: Any, writer: Any) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (both parsed JSON); [] if it can."""
    return _Checker().check(parse(reader), parse(writer), "")


# --------------------------------------------------------------------------- storage


def _normalise(node: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {"type"} and node["type"] in _PRIMITIVES:
            return node["type"]
        return {k: _normalise(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_normalise(v) for v in node]
    return node


def validate(text: str) -> tuple[Any, str, str]:
    """(parsed JSON, identity key, stored text) of a schema; raises :class:`InvalidSchema`."""
    try:
        parsed = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidSchema(f"schema is not JSON: {exc}") from None
    try:
        fastavro.parse_schema(parsed, _write_hint=False)
    except Exception as exc:  # fastavro raises several types for bad schemas
        raise InvalidSchema(f"{type(exc).__name__}: {exc}") from None
    parse(parsed)
    normal = _normalise(parsed)
    key = json.dumps(normal, sort_keys=True, separators=(",", ":"))
    return normal, key, json.dumps(normal, separators=(",", ":"))


@dataclass
class _Version:
    version: int
    schema_id: int


class Store:
    """The registry's state; every method is thread-safe and raises :class:`RegistryHTTPError`."""

    def __init__(self, default_level: str = DEFAULT_COMPATIBILITY) -> None:
        self._lock = threading.RLock()
        self._texts: dict[int, str] = {}  # id -> schema text
        self._parsed: dict[int, Any] = {}
        self._ids: dict[str, int] = {}  # identity key -> id
        self._subjects: dict[str, list[_Version]] = {}
        self._levels: dict[str, str] = {}
        self.global_level = default_level

    # --- schemas
    def schema_text(self, schema_id: int) -> str:
        with self._lock:
            if schema_id not in self._texts:
                raise RegistryHTTPError(404, SCHEMA_NOT_FOUND, f"Schema {schema_id} not found")
            return self._texts[schema_id]

    def subjects_of(self, schema_id: int) -> list[tuple[str, int]]:
        with self._lock:
            self.schema_text(schema_id)
            return [(s, v.version) for s, versions in sorted(self._subjects.items())
                    for v in versions if v.schema_id == schema_id]

    # --- subjects
    def subjects(self) -> list[str]:
        with self._lock:
            return sorted(self._subjects)

    def versions(self, subject: str) -> list[_Version]:
        with self._lock:
            versions = self._subjects.get(subject)
            if not versions:
                raise RegistryHTTPError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
            return list(versions)

    def version(self, subject: str, version: str) -> _Version:
        number = _version_number(version)
        versions = self.versions(subject)
        if number == -1:
            return versions[-1]
        for v in versions:
            if v.version == number:
                return v
        raise RegistryHTTPError(404, VERSION_NOT_FOUND,
                                f"Version {version} not found for subject '{subject}'.")

    def register(self, subject: str, text: str) -> int:
        parsed, key, stored = validate_or_422(text)
        with self._lock:
            existing = self._ids.get(key)
            versions = self._subjects.get(subject, [])
            for v in versions:
                if v.schema_id == existing:
                    return v.schema_id
            problems = self._problems(subject, parsed, versions, exactly=False)
            if problems:
                raise RegistryHTTPError(
                    409, INCOMPATIBLE,
                    f"Schema being registered is incompatible with an earlier schema for subject "
                    f"\"{subject}\" ({self.level(subject)}), details: [{'; '.join(problems)}]")
            if existing is None:
                existing = _stable_id(key)
                while existing in self._texts:  # a hash collision: probe on
                    existing = existing % 0x7FFFFFFF + 1
                self._texts[existing] = stored
                self._parsed[existing] = parsed
                self._ids[key] = existing
            number = versions[-1].version + 1 if versions else 1
            self._subjects[subject] = [*versions, _Version(number, existing)]
            log.info("registered schema id %d as %s version %d", existing, subject, number)
            return existing

    def lookup(self, subject: str, text: str) -> tuple[_Version, str]:
        _, key, _ = validate_or_422(text)
        with self._lock:
            versions = self.versions(subject)
            schema_id = self._ids.get(key)
            for v in versions:
                if v.schema_id == schema_id:
                    return v, self._texts[v.schema_id]
            raise RegistryHTTPError(404, SCHEMA_NOT_FOUND, "Schema not found")

    def delete_subject(self, subject: str) -> list[int]:
        with self._lock:
            versions = self.versions(subject)
            del self._subjects[subject]
            self._levels.pop(subject, None)
            return [v.version for v in versions]

    def delete_version(self, subject: str, version: str) -> int:
        with self._lock:
            found = self.version(subject, version)
            remaining = [v for v in self._subjects[subject] if v is not found]
            if remaining:
                self._subjects[subject] = remaining
            else:
                del self._subjects[subject]
            return found.version

    # --- compatibility
    def level(self, subject: str | None = None) -> str:
        with self._lock:
            return self._levels.get(subject, self.global_level) if subject else self.global_level

    def subject_level(self, subject: str) -> str | None:
        with self._lock:
            return self._levels.get(subject)

    def set_level(self, subject: str | None, level: Any) -> str:
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise RegistryHTTPError(
                422, INVALID_COMPATIBILITY_LEVEL,
                f"Invalid compatibility level {level!r}; valid: {', '.join(LEVELS)}")
        with self._lock:
            if subject is None:
                self.global_level = level.upper()
            else:
                self._levels[subject] = level.upper()
        return level.upper()

    def delete_level(self, subject: str) -> str:
        with self._lock:
            if subject not in self._levels:
                raise RegistryHTTPError(404, SUBJECT_LEVEL_CONFIG_NOT_FOUND, _no_level(subject))
            return self._levels.pop(subject)

    def test(self, subject: str, text: str, version: str | None) -> list[str]:
        """Problems registering ``text`` would meet against ``version`` (None: per the level)."""
        parsed, _, _ = validate_or_422(text)
        with self._lock:
            if version is None:
                return self._problems(subject, parsed, self.versions(subject), exactly=False)
            return self._problems(subject, parsed, [self.version(subject, version)],
                                  exactly=True)

    def _problems(self, subject: str, new: Any, versions: list[_Version],
                  exactly: bool) -> list[str]:
        """Problems of ``new`` against ``versions`` (``exactly``) or those the level names."""
        level = self.level(subject)
        if level == "NONE" or not versions:
            return []
        against = versions if exactly or level.endswith("_TRANSITIVE") else versions[-1:]
        problems: list[str] = []
        for v in against:
            old = self._parsed[v.schema_id]
            if level.startswith(("BACKWARD", "FULL")):
                problems += [f"version {v.version}: new schema cannot read old data: {p}"
                             for p in compatibility_problems(new, old)]
            if level.startswith(("FORWARD", "FULL")):
                problems += [f"version {v.version}: old schema cannot read new data: {p}"
                             for p in compatibility_problems(old, new)]
        return problems


def _stable_id(key: str) -> int:
    """A schema's id, derived from its identity key: the same in every run of the
    registry, so an id cached by a client or written into a record before a restart
    never comes to mean another schema."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % 0x7FFFFFFF + 1


def validate_or_422(text: Any) -> tuple[Any, str, str]:
    if not isinstance(text, str):
        raise RegistryHTTPError(422, INVALID_SCHEMA,
                                "Invalid schema: request has no \"schema\" string")
    try:
        return validate(text)
    except InvalidSchema as exc:
        raise RegistryHTTPError(422, INVALID_SCHEMA, f"Invalid schema: {exc}") from None


def _version_number(version: str) -> int:
    if version == "latest":
        return -1
    try:
        number = int(version)
    except ValueError:
        number = 0
    if number == -1 or number >= 1:
        return number
    raise RegistryHTTPError(422, INVALID_VERSION,
                            f"The specified version '{version}' is not a valid version id. Allowed "
                            "values are between [1, 2^31-1] and the string \"latest\"")


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "rwe-schema-registry"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            body = self._body()
            parts = urlsplit(self.path)
            segments = [unquote(s) for s in parts.path.strip("/").split("/") if s]
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            status, payload = _route(self.server.store, method, segments, query, body)
        except RegistryHTTPError as exc:
            status, payload = exc.status, {"error_code": exc.error_code, "message": exc.message}
        except Exception as exc:  # a bug here must still answer, not drop the connection
            log.exception("schema registry request failed")
            status, payload = 500, {"error_code": 50001, "message": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            raise RegistryHTTPError(413, 413, f"request body larger than {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise RegistryHTTPError(400, 400, f"request body is not JSON: {exc}") from None


def _no_level(subject: str) -> str:
    return f"Subject '{subject}' does not have subject-level compatibility configured"


def _schema_arg(body: Any) -> Any:
    if not isinstance(body, dict):
        raise RegistryHTTPError(422, INVALID_SCHEMA,
                                "Invalid schema: body must be {\"schema\": \"...\"}")
    schema_type = body.get("schemaType") or "AVRO"
    if schema_type != "AVRO":
        raise RegistryHTTPError(422, INVALID_SCHEMA,
                                f"Invalid schema: schemaType {schema_type} is not supported "
                                "(AVRO only)")
    if body.get("references"):
        raise RegistryHTTPError(422, INVALID_SCHEMA,
                                "Invalid schema: schema references are not supported; "
                                "inline the named types")
    return body.get("schema")  # validated by the store


def _route(store: Store, method: str, seg: list[str], query: dict[str, str],
           body: Any) -> tuple[int, Any]:
    n = len(seg)
    head = seg[0] if seg else ""
    if n == 0 and method == "GET":
        return 200, {}
    if head == "schemas" and method == "GET":
        if seg[1:] == ["types"]:
            return 200, ["AVRO"]
        if n >= 3 and seg[1] == "ids":
            schema_id = _int_id(seg[2])
            text = store.schema_text(schema_id)
            if n == 3:
                return 200, {"schema": text}
            if seg[3:] == ["schema"]:
                return 200, json.loads(text)
            if seg[3:] == ["subjects"]:
                return 200, sorted({s for s, _ in store.subjects_of(schema_id)})
            if seg[3:] == ["versions"]:
                return 200, [{"subject": s, "version": v} for s, v in store.subjects_of(schema_id)]
    if head == "subjects":
        if n == 1 and method == "GET":
            return 200, store.subjects()
        if n == 2:
            subject = seg[1]
            if method == "POST":
                v, text = store.lookup(subject, _schema_arg(body))
                return 200, _version_answer(subject, v, text)
            if method == "DELETE":
                return 200, store.delete_subject(subject)
        if n >= 3 and seg[2] == "versions":
            subject = seg[1]
            if n == 3 and method == "GET":
                return 200, [v.version for v in store.versions(subject)]
            if n == 3 and method == "POST":
                return 200, {"id": store.register(subject, _schema_arg(body))}
            if n == 4 and method == "DELETE":
                return 200, store.delete_version(subject, seg[3])
            if method == "GET" and (n == 4 or seg[4:] == ["schema"]):
                v = store.version(subject, seg[3])
                text = store.schema_text(v.schema_id)
                if n == 5:
                    return 200, json.loads(text)
                return 200, _version_answer(subject, v, text)
    if head == "config" and n <= 2:
        return _config(store, method, seg[1] if n == 2 else None, query, body)
    if (head == "compatibility" and method == "POST" and n in (4, 5) and seg[1] == "subjects"
            and seg[3] == "versions"):
        problems = store.test(seg[2], _schema_arg(body), seg[4] if n == 5 else None)
        answer: dict[str, Any] = {"is_compatible": not problems}
        if query.get("verbose", "").lower() == "true":
            answer["messages"] = problems
        return 200, answer
    if head == "mode" and method == "GET":
        return 200, {"mode": "READWRITE"}
    raise RegistryHTTPError(404 if method in ("GET", "DELETE") else 405, 404,
                            f"no endpoint {method} /{'/'.join(seg)}")


def _version_answer(subject: str, v: _Version, text: str) -> dict[str, Any]:
    return {"subject": subject, "version": v.version, "id": v.schema_id, "schema": text}


def _config(store: Store, method: str, subject: str | None, query: dict[str, str],
            body: Any) -> tuple[int, Any]:
    if method == "GET":
        if subject is None:
            return 200, {"compatibilityLevel": store.level()}
        level = store.subject_level(subject)
        if level is None:
            if query.get("defaultToGlobal", "").lower() == "true":
                return 200, {"compatibilityLevel": store.level()}
            raise RegistryHTTPError(404, SUBJECT_LEVEL_CONFIG_NOT_FOUND, _no_level(subject))
        return 200, {"compatibilityLevel": level}
    if method == "PUT":
        level = body.get("compatibility") if isinstance(body, dict) else None
        return 200, {"compatibility": store.set_level(subject, level)}
    if method == "DELETE" and subject is not None:
        return 200, {"compatibility": store.delete_level(subject)}
    raise RegistryHTTPError(405, 405, f"no endpoint {method} /config")


def _int_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RegistryHTTPError(404, SCHEMA_NOT_FOUND, f"Schema {text} not found") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: Store) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """End idle keep-alive connections, so their threads finish."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class RegistryServer:
    """The registry on ``host:port`` (0: any free port), served from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 compatibility: str = DEFAULT_COMPATIBILITY) -> None:
        self.host = host
        self.port = port
        self.store = Store(compatibility)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("registry server is not started")
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)  # noqa: S104
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> RegistryServer:
        if self._server is not None:
            return self
        try:
            server = _Server((self.host, self.port), self.store)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {self.port} is in use on {self.host}: stop the other "
                                  "process or pass --port") from None
            reason = exc.strerror or exc
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="rwe-schema-registry", daemon=True)
        self._thread.start()
        log.info("schema registry listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the registry until SIGINT or SIGTERM (main thread only)."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with RegistryServer(host, port) as server:
            print(f"schema registry listening on {server.url} (in memory; Ctrl-C stops it)",
                  flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``rwe registry``."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all interfaces)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8081)")


def run(args: argparse.Namespace, settings: Any) -> int:
    """``rwe registry``: an in-memory Confluent-compatible schema registry in the foreground."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be a port number, not {args.port}")
    serve(args.host, args.port)
    return 0
