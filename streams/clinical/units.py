"""Lab values into their catalogue unit, with physiological range checks.

Called once per lab event, so the hot path is two dict lookups and a multiply:
unit spellings are normalised once (cached) and every lab keeps a dict from the
normalised spelling to the factor into its canonical unit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from streams.vocabulary.dead_letters import Reason

REASONS = (Reason.MISSING_VALUE, Reason.MISSING_UNIT, Reason.UNIT_UNCONVERTIBLE, Reason.OUT_OF_RANGE)

# Feeds spell units freely ("mg/dl", "MG/DL", "µmol/l", "mcg/L", "x10^9/L"); the
# normalised key folds case and these spellings. Case folding is safe for the
# catalogue's units (no lab accepts both "g/L" and "G/L"), and it never merges
# different prefixes: mmol/L and mol/L stay distinct.
_MICRO = str.maketrans({"\u00b5": "u", "\u03bc": "u"})
_MC = re.compile(r"(^|[^a-z])mc(?=[a-z])")  # mcg, mcmol, mcl -> ug, umol, ul
_TEN_POWER = re.compile(r"^(?:x|\u00d7)?10(?:\^|\*\*|\*|e)(?=[+-]?\d)")  # x10^9 -> 10*9
_ANNOTATION = re.compile(r"\{[^{}]*\}")  # UCUM {annotations} carry no meaning
_UNIT_KEYS: dict[str, str] = {}
_UNIT_KEYS_MAX = 10_000  # feeds send few spellings; the bound only stops garbage growing it


def _normalise(unit: str) -> str:
    key = "".join(unit.split()).translate(_MICRO).lower()
    if _ANNOTATION.fullmatch(key) is None:  # "{score}" alone is a unit; "{cells}/ul" is /ul
        key = _ANNOTATION.sub("", key)
    key = _MC.sub(r"\1u", key)
    key = _TEN_POWER.sub("10*", key)
    key = key.replace("mm3", "ul")  # a cubic millimetre is a microlitre
    if key.startswith("1/"):  # UCUM: 1/uL == /uL
        key = key[1:]
    if key in ("percent", "pct"):
        key = "%"
    return key


def normalise_unit(unit: str) -> str:
    """Case-insensitive matching key of a unit spelling ("µg/L", "mcg/l" -> "ug/l"); cached."""
    key = _UNIT_KEYS.get(unit)
    if key is None:
        key = _normalise(unit)
        if len(_UNIT_KEYS) >= _UNIT_KEYS_MAX:
            _UNIT_KEYS.clear()
        _UNIT_KEYS[unit] = key
    return key


@dataclass(frozen=True, slots=True)
class LabDefinition:
    """A lab concept: canonical unit, accepted units with factors, range (canonical unit)."""

    concept: str
    unit: str
    # Keys may be given in any spelling; they are stored normalised, canonical unit included.
    factors: Mapping[str, float] = field(hash=False)
    low: float
    high: float
    unitless: bool = False

    def __post_init__(self) -> None:
        factors: dict[str, float] = {}
        for spelling, factor in {**self.factors, self.unit: 1.0}.items():
            key = normalise_unit(spelling)
            f = float(factor)
            if not (math.isfinite(f) and f > 0):
                raise ValueError(f"factor for {spelling!r} must be a positive number")
            if key in factors and not math.isclose(factors[key], f, rel_tol=1e-9):
                raise ValueError(f"units {spelling!r} and another spelling of it differ")
            factors[key] = f
        own = self.factors.get(self.unit)
        if own is not None and own != 1.0:
            raise ValueError(f"factor of the canonical unit {self.unit!r} must be 1")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError("range must be two finite numbers, low <= high")
        object.__setattr__(self, "factors", MappingProxyType(factors))
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))


class ValueRejected(Exception):
    """A lab value that goes to the dead-letter topic; ``reason`` is one of REASONS."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _fmt(x: float) -> str:
    return repr(round(x, 6))


def _show_unit(unit: str) -> str:
    # The unit is free text from the feed: quote it and bound it.
    return repr(unit[:24] + "..." if len(unit) > 24 else unit)


def to_canonical(lab: LabDefinition, value: float | None, unit: str | None) -> tuple[float, str]:
    """``(value, unit)`` in the lab's canonical unit; raises ValueRejected with the reason."""
    if value is None:
        raise ValueRejected(Reason.MISSING_VALUE, f"{lab.concept} value missing")
    if type(value) is not float:
        try:
            value = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueRejected(Reason.MISSING_VALUE, f"{lab.concept} value is not a number") from None
    if not unit:
        if not lab.unitless:
            raise ValueRejected(Reason.MISSING_UNIT, f"{lab.concept} value {_fmt(value)} has no unit")
        factor = 1.0
    else:
        if type(unit) is not str:  # defensive: the Avro schema says string
            unit = str(unit)
        key = _UNIT_KEYS.get(unit)
        if key is None:
            key = normalise_unit(unit)
        if not key and lab.unitless:  # blank unit: same as missing
            factor = 1.0
        else:
            got = lab.factors.get(key)
            if got is None:
                raise ValueRejected(Reason.MISSING_UNIT if not key else Reason.UNIT_UNCONVERTIBLE,
                                    f"{lab.concept} unit {_show_unit(unit)} not convertible to {lab.unit}")
            factor = got
    converted = value * factor
    # NaN fails both comparisons, and inf is outside any finite range.
    if not (lab.low <= converted <= lab.high):
        source = "" if factor == 1.0 else f" (from {_fmt(value)} {_show_unit(unit or '')})"
        raise ValueRejected(Reason.OUT_OF_RANGE,
            f"{lab.concept} value {_fmt(converted)} {lab.unit}{source} "
            f"outside {lab.low:g}-{lab.high:g} {lab.unit}",
        )
    return converted, lab.unit
