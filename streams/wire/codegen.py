# mypyc: compiled (the per-event path: setup.py)
"""Avro encoders and decoders compiled from a schema into straight-line Python.

fastavro's Cython codecs interpret the schema for every record: ~11.7 us to read and
~14 us to write one NormalisedEvent here. A function generated once per schema, with
every field's step written out (no dispatch on the type per value, small varints from a
table), reads it in ~9.1 us and writes it in ~5.0 us. Avro's binary encoding is
canonical, so the bytes are exactly fastavro's; property tests check both directions on
random records of every schema.

Shapes covered: the ones our schemas use (string, bytes, int, long, double, boolean, enum,
nested records, arrays of and maps to those, unions of null and one type); a record may
be given as a dict or as a tuple of its fields in schema order (a NamedTuple of the
same fields needs no dict built for it). Anything else raises :class:`Unsupported` and
the caller falls back to fastavro. The decoder
reads records written with the reader's own schema; a different writer version goes
through fastavro's schema resolution.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable
from typing import Any

from streams.wire.primitives import SMALL, read_long, zigzag

STRING_CACHE = 256  # encoded values kept per string field


class Unsupported(Exception):
    pass


_SIMPLE = {"string", "bytes", "long", "int", "double", "boolean", "null"}
_LOGICAL = (None, "local-timestamp-micros", "timestamp-micros", "local-timestamp-millis", "timestamp-millis")


def _type(t: Any) -> Any:
    """The schema node with logical types checked and dropped, unions validated."""
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        if len(t) != 2 or len(branches) != 1:
            raise Unsupported(f"union {t}")
        return t
    if isinstance(t, dict):
        if t.get("logicalType") not in _LOGICAL:
            raise Unsupported(f"logical type {t['logicalType']}")
        if t["type"] in ("record", "enum", "array", "map"):
            return t
        return _type(t["type"])
    if t not in _SIMPLE:
        raise Unsupported(f"type {t}")
    return t


class _Source:
    """Generated lines plus the constants they refer to and the types of their variables
    (declared in the module :func:`module_source` writes, for mypyc; the same lines run as
    they are under ``exec``). ``append`` is how a written piece is added to the output."""

    def __init__(self, append: str = "a") -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self.const_kinds: dict[str, str] = {}  # annotations of constants not typed by their value
        self.types: dict[str, str] = {}
        self.counter = 0
        self.append = append

    def const(self, value: Any, kind: str | None = None) -> str:
        """A module-level constant; ``kind`` its annotation (default: by its value's type)."""
        name = f"_c{len(self.names)}"
        self.names[name] = value
        if kind is not None:
            self.const_kinds[name] = kind
        return name

    def var(self, prefix: str, kind: str = "Any") -> str:
        self.counter += 1
        name = f"{prefix}{self.counter}"
        self.types[name] = kind
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


# ---------------------------------------------------------------- encoder
def _write_value(src: _Source, ind: int, t: Any, v: str) -> None:
    t = _type(t)
    if isinstance(t, list):
        null_index = t.index("null")
        src.emit(ind, f"if {v} is None:")
        src.emit(ind + 1, f"{src.append}({SMALL[null_index]!r})")
        src.emit(ind, "else:")
        src.emit(ind + 1, f"{src.append}({SMALL[1 - null_index]!r})")
        _write_value(src, ind + 1, t[1 - null_index], v)
        return
    if isinstance(t, dict):
        kind = t["type"]
        if kind == "record":  # a dict, or a tuple of the fields in schema order (no dict to build)
            names = [src.var("v") for _ in t["fields"]]
            src.emit(ind, f"if isinstance({v}, dict):")
            for fv, f in zip(names, t["fields"], strict=True):
                if f.get("default") is None:
                    src.emit(ind + 1, f"{fv} = {v}.get({f['name']!r})")
                else:  # a field the writer's dict leaves out takes its schema default, as in fastavro
                    default = f["default"].encode("latin-1") if f["type"] == "bytes" else f["default"]
                    src.emit(ind + 1, f"{fv} = {v}.get({f['name']!r}, {src.const(default, 'Final[Any]')})")
            src.emit(ind, "else:")
            src.emit(ind + 1, f"{', '.join(names)}{',' if len(names) == 1 else ''} = {v}")
            for fv, f in zip(names, t["fields"], strict=True):
                _write_value(src, ind, f["type"], fv)
        elif kind == "enum":
            table = src.const({s: zigzag(i) for i, s in enumerate(t["symbols"])})
            src.emit(ind, f"{src.append}({table}[{v}])")
        else:  # array or map: one block of len(v) items, then the empty block that ends it
            src.emit(ind, f"if {v}:")
            src.emit(ind + 1, f"{src.append}(_zz(len({v})))")
            item = src.var("i")
            if kind == "array":
                src.emit(ind + 1, f"for {item} in {v}:")
                _write_value(src, ind + 2, t["items"], item)
            else:
                key = src.var("k")
                src.emit(ind + 1, f"for {key}, {item} in {v}.items():")
                _write_value(src, ind + 2, "string", key)
                _write_value(src, ind + 2, t["values"], item)
            src.emit(ind, f"{src.append}(b'\\x00')")
    elif t == "string":
        # Most string fields repeat a few values (sites, indicators, units, statuses): their
        # encodings are kept per field, up to STRING_CACHE values (unique ids just miss).
        cache, b, x = src.const({}), src.var("b", "bytes"), src.var("x", "bytes | None")
        src.emit(ind, f"{x} = {cache}.get({v})")
        src.emit(ind, f"if {x} is None:")
        src.emit(ind + 1, f"{b} = {v}.encode()")
        src.emit(ind + 1, f"{x} = (_small[len({b})] if len({b}) < 8192 else _zz(len({b}))) + {b}")
        src.emit(ind + 1, f"if len({cache}) < {STRING_CACHE}:")
        src.emit(ind + 2, f"{cache}[{v}] = {x}")
        src.emit(ind, f"{src.append}({x})")
    elif t == "bytes":
        b = src.var("b", "bytes")
        src.emit(ind, f"{b} = bytes({v})")
        src.emit(ind, f"{src.append}(_small[len({b})] if len({b}) < 8192 else _zz(len({b})))")
        src.emit(ind, f"{src.append}({b})")
    elif t in ("long", "int"):
        src.emit(ind, f"{src.append}(_small[{v}] if 0 <= {v} < 8192 else _zz({v}))")
    elif t == "double":
        src.emit(ind, f"{src.append}(_pack_double({v}))")
    elif t == "boolean":
        src.emit(ind, f"{src.append}(b'\\x01' if {v} else b'\\x00')")
    # null: nothing to write


def _encoder_source(schema: dict[str, Any], name: str, append: str) -> _Source:
    src = _Source(append)
    _write_value(src, 1, schema, "rec")
    src.lines = [f"def {name}(rec: Any) -> bytes:", "    out: list[bytes] = []",
                 *(["    a = out.append"] if append == "a" else []), *src.lines, "    return b''.join(out)"]
    return src


def compile_encoder(schema: dict[str, Any]) -> Callable[[dict[str, Any]], bytes]:
    """The Avro body of a record of ``schema`` (a plain dict: timestamps as ints)."""
    compiled = _precompiled(schema).get("encode")
    if compiled is not None:
        return compiled
    src = _encoder_source(schema, "encode", "a")
    names = {**src.names, "_zz": zigzag, "_small": SMALL, "_pack_double": struct.Struct("<d").pack}
    exec(compile("\n".join(src.lines), f"<avro encoder {schema.get('name')}>", "exec"), names)  # noqa: S102
    encode: Callable[[dict[str, Any]], bytes] = names["encode"]
    return encode


# ---------------------------------------------------------------- decoder
def _read_long(src: _Source, ind: int, target: str) -> None:
    src.emit(ind, "b = d[p]")
    src.emit(ind, "if b < 0x80:")
    src.emit(ind + 1, f"{target} = (b >> 1) ^ -(b & 1)")
    src.emit(ind + 1, "p += 1")
    src.emit(ind, "else:")
    src.emit(ind + 1, f"{target}, p = _read_long(d, p)")


def _read_value(src: _Source, ind: int, t: Any, target: str) -> None:
    t = _type(t)
    if isinstance(t, list):
        null_index = t.index("null")
        branch = src.var("u", "int")
        _read_long(src, ind, branch)
        src.emit(ind, f"if {branch} == {null_index}:")
        src.emit(ind + 1, f"{target} = None")
        src.emit(ind, f"elif {branch} == {1 - null_index}:")
        _read_value(src, ind + 1, t[1 - null_index], target)
        src.emit(ind, "else:")
        src.emit(ind + 1, f"raise ValueError('union branch ' + str({branch}) + ' out of range')")
        return
    if isinstance(t, dict):
        kind = t["type"]
        if kind == "record":
            fields = []
            for f in t["fields"]:
                fv = src.var("f")
                _read_value(src, ind, f["type"], fv)
                fields.append(f"{f['name']!r}: {fv}")
            src.emit(ind, f"{target} = {{{', '.join(fields)}}}")
        elif kind == "enum":
            symbols = src.const(tuple(t["symbols"]))
            index = src.var("e", "int")
            _read_long(src, ind, index)
            src.emit(ind, f"if {index} < 0:")
            src.emit(ind + 1, "raise ValueError('negative enum index')")
            src.emit(ind, f"{target} = {symbols}[{index}]")
        else:
            count, item = src.var("n", "int"), src.var("x")
            src.emit(ind, f"{target} = {'[]' if kind == 'array' else '{}'}")
            src.emit(ind, "while True:")
            _read_long(src, ind + 1, count)
            src.emit(ind + 1, f"if {count} == 0:")
            src.emit(ind + 2, "break")
            src.emit(ind + 1, f"if {count} < 0:  # a block with its byte size")
            src.emit(ind + 2, f"{count} = -{count}")
            src.emit(ind + 2, "_, p = _read_long(d, p)")
            src.emit(ind + 1, f"for _ in range({count}):")
            if kind == "array":
                _read_value(src, ind + 2, t["items"], item)
                src.emit(ind + 2, f"{target}.append({item})")
            else:
                key = src.var("k")
                _read_value(src, ind + 2, "string", key)
                _read_value(src, ind + 2, t["values"], item)
                src.emit(ind + 2, f"{target}[{key}] = {item}")
    elif t in ("string", "bytes"):
        size = src.var("s", "int")
        _read_long(src, ind, size)
        src.emit(ind, f"if {size} < 0 or p + {size} > end:")
        src.emit(ind + 1, f"raise ValueError('{t} run past the end of the data')")
        src.emit(ind, f"{target} = d[p:p + {size}]{'.decode()' if t == 'string' else ''}")
        src.emit(ind, f"p += {size}")
    elif t in ("long", "int"):
        _read_long(src, ind, target)
    elif t == "double":
        src.emit(ind, f"{target} = _unpack_double(d, p)[0]")
        src.emit(ind, "p += 8")
    elif t == "boolean":
        src.emit(ind, "b = d[p]")
        src.emit(ind, "if b > 1:")
        src.emit(ind + 1, "raise ValueError('boolean byte is not 0 or 1')")
        src.emit(ind, f"{target} = b == 1")
        src.emit(ind, "p += 1")
    else:  # null
        src.emit(ind, f"{target} = None")


def _decoder_source(schema: dict[str, Any], name: str) -> _Source:
    src = _Source()
    _read_value(src, 1, schema, "rec")
    src.lines = [f"def {name}(d: bytes, p: int) -> tuple[Any, int]:", "    end = len(d)", *src.lines,
                 "    return rec, p"]
    return src


def compile_decoder(schema: dict[str, Any]) -> Callable[[bytes, int], tuple[dict[str, Any], int]]:
    """``decode(data, pos) -> (record, position after it)`` for bodies written with ``schema``.

    Malformed data raises ValueError, IndexError, UnicodeDecodeError or struct.error.
    """
    compiled = _precompiled(schema).get("decode")
    if compiled is not None:
        return compiled
    src = _decoder_source(schema, "decode")
    names = {**src.names, "_read_long": read_long, "_unpack_double": struct.Struct("<d").unpack_from}
    exec(compile("\n".join(src.lines), f"<avro decoder {schema.get('name')}>", "exec"), names)  # noqa: S102
    decode: Callable[[bytes, int], tuple[dict[str, Any], int]] = names["decode"]
    return decode


def compile_field_reader(schema: dict[str, Any], field: str) -> Callable[[bytes, int], Any]:
    """``read(data, pos) -> value`` of one top-level field of a record written with
    ``schema``, reading only the fields before it (a consumer that keeps one kind of
    record can skip the others without decoding them)."""
    src = _Source()
    src.emit(0, "def read(d, p):")
    src.emit(1, "end = len(d)")
    for f in schema["fields"]:
        target = src.var("f")
        if f["name"] == field:
            _read_value(src, 1, f["type"], target)
            src.emit(1, f"return {target}")
            break
        if _type(f["type"]) in ("string", "bytes"):  # skipped without decoding
            size = src.var("s")
            _read_long(src, 1, size)
            src.emit(1, f"if {size} < 0 or p + {size} > end:")
            src.emit(2, "raise ValueError('string run past the end of the data')")
            src.emit(1, f"p += {size}")
        else:
            _read_value(src, 1, f["type"], target)
    else:
        raise KeyError(f"{schema.get('name')} has no field {field!r}")
    names = {**src.names, "_read_long": read_long, "_unpack_double": struct.Struct("<d").unpack_from}
    exec(compile("\n".join(src.lines), f"<avro field reader {schema.get('name')}.{field}>", "exec"), names)  # noqa: S102
    read: Callable[[bytes, int], Any] = names["read"]
    return read


# ---------------------------------------------------------------- precompiled module
def schema_key(schema: dict[str, Any]) -> str:
    """Identifies a schema exactly (its JSON, keys sorted): what a precompiled codec was made from."""
    return hashlib.sha1(json.dumps(schema, sort_keys=True).encode()).hexdigest()  # noqa: S324


def _precompiled(schema: dict[str, Any]) -> dict[str, Any]:
    """The codecs :mod:`streams.wire.codecs` holds for exactly this schema (none if it is absent)."""
    try:
        from streams.wire import codecs as avro_codecs
    except ImportError:  # being regenerated
        return {}
    return avro_codecs.CODECS.get(schema_key(schema), {})


def _declarations(src: _Source) -> list[str]:
    """The generated function with its variables declared (the first line is its ``def``)."""
    return [src.lines[0], *(f"    {name}: {kind}" for name, kind in src.types.items()), *src.lines[1:]]


def module_source(schemas: dict[str, dict[str, Any]]) -> str:
    """Python source of a module holding the encoder and decoder of each of ``schemas`` (by
    name), typed for mypyc, which compiles it (setup.py): the engine's own schemas are
    encoded and decoded on every event, and compiled they take ~15-40 % less time."""
    parts = ["# mypyc: compiled (the per-event path: setup.py)",
             '"""Avro codecs of the engine\'s schemas, generated by streams.wire.codegen: do not edit.',
             "",
             "Regenerate after changing a schema (a test checks): "
             "``.venv/bin/python -c 'from streams.wire.codegen import main; main()'``.",
             '"""',
             "",
             "# ruff: noqa",
             "import struct",
             "from collections.abc import Callable",
             "from typing import Any, Final",
             "",
             "from streams.wire.primitives import SMALL as _small",
             "from streams.wire.primitives import read_long as _read_long",
             "from streams.wire.primitives import zigzag as _zz",
             "",
             '_pack_double: Final = struct.Struct("<d").pack',
             '_unpack_double: Final = struct.Struct("<d").unpack_from',
             ""]
    registry = []
    for n, (name, schema) in enumerate(sorted(schemas.items())):
        entries = []
        for kind, src in (("encode", _encoder_source(schema, f"encode_{n}", "out.append")),
                          ("decode", _decoder_source(schema, f"decode_{n}"))):
            body = "\n".join(src.lines)
            for const, value in src.names.items():  # module-level, unique per function
                unique = f"{const}_{kind[0]}{n}"
                body = re.sub(rf"\b{const}\b", unique, body)
                kind_of = src.const_kinds.get(const) or (
                    "Final[dict[Any, bytes]]" if isinstance(value, dict) else "Final[tuple[str, ...]]")
                parts.append(f"{unique}: {kind_of} = {value!r}")
            src.lines = body.split("\n")
            parts += ["", "", *_declarations(src), "", ""]
            entries.append(f'"{kind}": {kind}_{n}')
        registry.append(f'    "{schema_key(schema)}": {{{", ".join(entries)}}},  # {name}')
    parts += ["CODECS: dict[str, dict[str, Callable[..., Any]]] = {", *registry, "}", ""]
    return "\n".join(parts)


def main() -> None:
    """Writes streams/wire/codecs.py from the engine's schemas (PRECOMPILED)."""
    from pathlib import Path

    from streams.wire import schemas as engine_schemas

    out = Path(__file__).with_name("codecs.py")
    out.write_text(module_source({name: engine_schemas.raw_schema(name) for name in engine_schemas.PRECOMPILED}))
    print(f"wrote {out}")
