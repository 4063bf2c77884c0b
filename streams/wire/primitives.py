# mypyc: compiled (the per-event path: setup.py)
"""Avro's variable-length integers: the runtime the generated codecs (:mod:`streams.wire.codecs`) call.

Kept apart from the generator (:mod:`streams.wire.codegen`) so the generated module
depends on this alone and the generator can look up the generated codecs without an
import loop.
"""

from __future__ import annotations

_CHUNK = 1 << 14


def _varint(z: int) -> bytes:
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_FINAL = [_varint(z) for z in range(_CHUNK)]  # varint of z < 2**14 (1-2 bytes)
_MORE = [bytes(((z & 0x7F) | 0x80, (z >> 7) | 0x80)) for z in range(_CHUNK)]  # 14 bits, more follow
SMALL = _FINAL[::2]  # zigzag(n) for 0 <= n < 2**13


def zigzag(n: int) -> bytes:
    """An Avro int/long: zig-zag, then a varint written 14 bits at a time (unrolled for the
    sizes timestamps in microseconds take)."""
    if 0 <= n < 8192:
        return SMALL[n]
    z = (n << 1) ^ (n >> 63)
    if z < _CHUNK:
        return _FINAL[z]
    if z < 1 << 28:
        return _MORE[z & 0x3FFF] + _FINAL[z >> 14]
    if z < 1 << 42:
        return _MORE[z & 0x3FFF] + _MORE[(z >> 14) & 0x3FFF] + _FINAL[z >> 28]
    if z < 1 << 56:
        return _MORE[z & 0x3FFF] + _MORE[(z >> 14) & 0x3FFF] + _MORE[(z >> 28) & 0x3FFF] + _FINAL[z >> 42]
    parts = []
    while z >= _CHUNK:
        parts.append(_MORE[z & 0x3FFF])
        z >>= 14
    parts.append(_FINAL[z])
    return b"".join(parts)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos``: (value, position after it). Unrolled: timestamps take 8 bytes."""
    b = data[pos]
    acc = b & 0x7F
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 1
    b = data[pos + 1]
    acc |= (b & 0x7F) << 7
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 2
    b = data[pos + 2]
    acc |= (b & 0x7F) << 14
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 3
    b = data[pos + 3]
    acc |= (b & 0x7F) << 21
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 4
    b = data[pos + 4]
    acc |= (b & 0x7F) << 28
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 5
    b = data[pos + 5]
    acc |= (b & 0x7F) << 35
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 6
    b = data[pos + 6]
    acc |= (b & 0x7F) << 42
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 7
    b = data[pos + 7]
    acc |= (b & 0x7F) << 49
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 8
    b = data[pos + 8]
    acc |= (b & 0x7F) << 56
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 9
    b = data[pos + 9]
    acc |= (b & 0x7F) << 63
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 10
    raise ValueError("varint longer than 10 bytes")
