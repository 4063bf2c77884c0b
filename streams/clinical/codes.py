"""Source codes (ICD-10 variants, SNOMED CT, LOINC, ATC, OPS, OPCS, ELN 2022 responses) to catalogue concepts.

The catalogue (``catalogue/concepts.toml``) lists, per concept, the codes or code
prefixes that mean it. ``CodeMap.map`` canonicalises a raw (system, code) pair from a
feed and answers the concepts; it never raises on data, because an unmappable code is
a counted data-quality fact, not a crash. Results are cached per raw pair, so a
repeated code costs one dict lookup.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from streams.clinical.units import LabDefinition
from streams.errors import ConfigError

DEFAULT_CONCEPTS_FILE = Path(__file__).resolve().parent.parent / "catalogue" / "concepts.toml"
CANONICAL_SYSTEMS = (
    "ICD10", "ICD10CM", "ICD10GM", "ICD10PCS", "SNOMED", "LOINC", "ATC", "OPS", "OPCS", "ELN2022",
)
ICD10_VARIANTS = ("ICD10", "ICD10CM", "ICD10GM")
PREFIX_SYSTEMS = frozenset({*ICD10_VARIANTS, "ICD10PCS", "OPS", "OPCS"})
# ICD-10-GM "Diagnosesicherheit": G confirmed, V suspected, Z status post, A excluded.
CERTAINTIES = frozenset("GVZA")

# Alias keys are lower case without spaces, underscores and dashes (see _system_key).
_ALIASES: dict[str, tuple[str, ...]] = {
    "ICD10": (
        "icd10", "icd10who", "whoicd10", "i10", "http://hl7.org/fhir/sid/icd10",
        "http://terminology.hl7.org/codesystem/icd10", "2.16.840.1.113883.6.3",
    ),
    "ICD10CM": (
        "icd10cm", "i10c", "http://hl7.org/fhir/sid/icd10cm", "2.16.840.1.113883.6.90",
    ),
    "ICD10GM": (
        "icd10gm", "http://fhir.de/codesystem/bfarm/icd10gm", "http://hl7.org/fhir/sid/icd10gm",
        "http://fhir.de/codesystem/dimdi/icd10gm",
    ),
    "ICD10PCS": (
        "icd10pcs", "i10p", "http://www.cms.gov/medicare/coding/icd10",
        "2.16.840.1.113883.6.4",
    ),
    "SNOMED": (
        "snomed", "snomedct", "sct", "snomedctus", "snomedctint", "http://snomed.info/sct",
        "2.16.840.1.113883.6.96",
    ),
    "LOINC": ("loinc", "ln", "http://loinc.org", "2.16.840.1.113883.6.1"),
    "ATC": (
        "atc", "whoatc", "http://www.whocc.no/atc", "http://fhir.de/codesystem/bfarm/atc",
        "http://fhir.de/codesystem/dimdi/atc", "2.16.840.1.113883.6.73",
    ),
    "OPS": (
        "ops", "ops301", "http://fhir.de/codesystem/bfarm/ops",
        "http://fhir.de/codesystem/dimdi/ops",
    ),
    "OPCS": ("opcs", "opcs4", "opcs410"),
    # AML response categories of the ELN 2022 recommendations (coded assessment results)
    "ELN2022": ("eln2022", "eln", "europeanleukemianet2022"),
}
_SYSTEM_BY_KEY = {alias: system for system, aliases in _ALIASES.items() for alias in aliases}
# A year-versioned name: "ICD-10-GM 2024" -> "icd10gm".
_VERSION_TAIL = re.compile(r"^(.+?)v?(?:19|20)\d\d$", re.ASCII)

# catalogue list field -> the systems it applies to
_LIST_FIELDS: dict[str, tuple[str, ...]] = {
    "icd10": ICD10_VARIANTS,
    "icd10who": ("ICD10",),
    "icd10cm": ("ICD10CM",),
    "icd10gm": ("ICD10GM",),
    "exclude": ICD10_VARIANTS,
    "icd10pcs": ("ICD10PCS",),
    "snomed": ("SNOMED",),
    "snomed_descendants": ("SNOMED",),
    "loinc": ("LOINC",),
    "atc": ("ATC",),
    "ops": ("OPS",),
    "opcs": ("OPCS",),
    "eln2022": ("ELN2022",),
}
_CONCEPT_FIELDS = frozenset({"area", "doc", "source", *_LIST_FIELDS})
_LAB_FIELDS = frozenset({"area", "doc", "source", "loinc", "snomed", "unit", "convert", "range", "unitless"})

_CACHE_MAX = 100_000  # distinct raw (system, code) pairs; cleared, not evicted: cheap and rare
_SYSTEM_CACHE_MAX = 10_000


# ------------------------------------------------------------------ canonical codes
# Each canonicaliser takes the stripped raw code and returns (canonical code, match key,
# certainty) or None when the code is not well-formed for the system. The match key is
# what the catalogue's codes are compared with: dotless for the prefix-matched systems.
Canonical = tuple[str, str, str | None]

_ICD_SUFFIX = "+*!\u2020\u2021"  # dagger (+ or †), asterisk (*), GM secondary code (!), ‡
_LATERALITY = "RLB"  # GM Seitenlokalisation: right, left, both
_ICD_WHO_GM = re.compile(r"([A-Z]\d{2})\.?(\d{0,2})([+*!\u2020\u2021GVZARLB]*)", re.ASCII)
_ICD_CM = re.compile(r"([A-Z]\d[0-9A-Z])\.?([0-9A-Z]{0,4})([+*!\u2020\u2021]*)", re.ASCII)
_ICD_SUFFIX_TOKEN = re.compile(r"[+*!\u2020\u2021GVZARLB]+", re.ASCII)
_PCS = re.compile(r"[0-9A-HJ-NP-Z]{3,7}", re.ASCII)
_SNOMED = re.compile(r"[1-9]\d{5,17}", re.ASCII)
_LOINC = re.compile(r"(?:L[A-Z])?\d{1,7}-\d", re.ASCII)
_ATC = re.compile(r"[A-Z](?:\d{2}(?:[A-Z](?:[A-Z](?:\d{2})?)?)?)?", re.ASCII)
_OPS = re.compile(r"(\d)-?(\d{2}[0-9a-z])\.?([0-9a-z]{0,3})", re.ASCII)
_OPCS = re.compile(r"([A-Z]\d{2})\.?(\d{0,2})", re.ASCII)
# A code of an unknown system is kept only when it looks like a code: free text in a
# code field must not leave the normaliser.
_ANY_CODE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.:_+*!/-]{0,39}", re.ASCII)


def _icd10(raw: str, cm: bool) -> Canonical | None:
    head, *tail = raw.upper().split()
    match = (_ICD_CM if cm else _ICD_WHO_GM).fullmatch(head)
    if match is None:
        return None
    category, rest, markers = match.groups()
    for token in tail:  # "I50.9 G", "S72.0 R V", "I21.0 +"
        if _ICD_SUFFIX_TOKEN.fullmatch(token) is None:
            return None
        markers += token
    certainty = None
    if markers:
        letters = [c for c in markers if c not in _ICD_SUFFIX]
        found = [c for c in letters if c in CERTAINTIES]
        sides = [c for c in letters if c in _LATERALITY]
        if len(found) > 1 or len(sides) > 1:  # "I50AV" is garbage, not two certainties
            return None
        certainty = found[0] if found else None
    code = f"{category}.{rest}" if rest else category
    return code, category + rest, certainty


def _who_gm(raw: str) -> Canonical | None:
    return _icd10(raw, cm=False)


def _cm(raw: str) -> Canonical | None:
    return _icd10(raw, cm=True)


def _pcs(raw: str) -> Canonical | None:
    code = raw.upper()
    return (code, code, None) if _PCS.fullmatch(code) else None


def _exact_upper(pattern: re.Pattern[str]) -> Callable[[str], Canonical | None]:
    def canonical(raw: str) -> Canonical | None:
        code = raw.upper()
        return (code, code, None) if pattern.fullmatch(code) else None

    return canonical


_ELN = re.compile(r"[A-Z]{2,8}", re.ASCII)


def _eln2022(raw: str) -> Canonical | None:
    # ELN 2022 table 6 abbreviations, upper case: "CRi" -> CRI, "CR MRD-" / "CR_MRD_NEG" -> CRMRDNEG.
    code = raw.upper().replace("\u2212", "-")
    if code.endswith("MRD-"):
        code = code[:-1] + "NEG"
    code = re.sub(r"[\s_-]", "", code).replace("NEGATIVE", "NEG")
    return (code, code, None) if _ELN.fullmatch(code) else None


def _ops(raw: str) -> Canonical | None:
    # OPS writes its letters in lower case ("8-800.c0", "5-83b.50").
    match = _OPS.fullmatch(raw.lower())
    if match is None:
        return None
    chapter, category, rest = match.groups()
    base = f"{chapter}-{category}"
    return (f"{base}.{rest}" if rest else base), base + rest, None


def _opcs(raw: str) -> Canonical | None:
    match = _OPCS.fullmatch(raw.upper())
    if match is None:
        return None
    category, rest = match.groups()
    return (f"{category}.{rest}" if rest else category), category + rest, None


_CANONICALISERS: dict[str, Callable[[str], Canonical | None]] = {
    "ICD10": _who_gm,
    "ICD10GM": _who_gm,
    "ICD10CM": _cm,
    "ICD10PCS": _pcs,
    "SNOMED": _exact_upper(_SNOMED),
    "LOINC": _exact_upper(_LOINC),
    "ATC": _exact_upper(_ATC),
    "OPS": _ops,
    "OPCS": _opcs,
    "ELN2022": _eln2022,
}
# Catalogue entries are prefixes: the CM shape is the loosest ICD-10 one (G3183, C7A).
_CATALOGUE_CANONICALISERS = {**_CANONICALISERS, "ICD10": _cm, "ICD10GM": _cm}


def _system_key(raw: str) -> str:
    key = raw.strip().lower()
    for junk in (" ", "_", "-"):
        key = key.replace(junk, "")
    key = key.removeprefix("urn:oid:").split("|", 1)[0].rstrip("/")
    return key.replace("https://", "http://", 1)


# ------------------------------------------------------------------ results
@dataclass(frozen=True, slots=True)
class CodeMapping:
    """What a raw (system, code) means.

    ``system`` is None for an unknown system; ``code`` is None when missing or not
    well-formed for the system, so the three unmapped cases (unknown system, bad code,
    valid code outside the catalogue) stay distinguishable. ``certainty`` is the
    ICD-10-GM diagnosis certainty letter when the code carried one.
    """

    system: str | None
    code: str | None
    concepts: tuple[str, ...] = ()
    lab: LabDefinition | None = None
    certainty: str | None = None

    @property
    def mapped(self) -> bool:
        return bool(self.concepts)


_NO_SYSTEM = CodeMapping(None, None)


class CodeMap:
    """The loaded concept catalogue: raw codes to concepts, with a per-pair cache."""

    def __init__(
        self,
        *,
        version: str,
        index: Mapping[str, Mapping[str, frozenset[str]]],
        exclude: Mapping[str, Mapping[str, frozenset[str]]],
        labs: Mapping[str, LabDefinition],
        sources: Mapping[str, Mapping[str, tuple[str, ...]]],
        areas: Mapping[str, str],
        provenance: Mapping[str, str] | None = None,
    ) -> None:
        self.version = version
        self._index = index
        self._exclude = exclude
        self.labs: Mapping[str, LabDefinition] = MappingProxyType(dict(labs))
        self._lab_by_loinc = {code: lab for lab in labs.values()
                              for code in sources[lab.concept].get("LOINC", ())}
        self._sources = sources
        self.areas: Mapping[str, str] = MappingProxyType(dict(areas))
        # concept or lab -> the value set, phenotype or guideline its codes come from
        self.provenance: Mapping[str, str] = MappingProxyType(dict(provenance or {}))
        self.concept_names = frozenset(sources)
        self._cache: dict[tuple[str | None, str | None], CodeMapping] = {}
        self._systems: dict[str, str | None] = {}

    @classmethod
    def load(cls, path: Path | None = None) -> CodeMap:
        """Load and validate a concepts file; a bad one raises a one-line ConfigError."""
        return _load(Path(path or DEFAULT_CONCEPTS_FILE), cls)

    def canonical_system(self, raw: str | None) -> str | None:
        """The canonical system for a feed's system name, URL or OID; None when unknown."""
        if not raw or not isinstance(raw, str):
            return None
        hit = self._systems.get(raw, "")
        if hit != "":
            return hit
        key = _system_key(raw)
        system = _SYSTEM_BY_KEY.get(key) or (key.upper() if key.upper() in _CANONICALISERS
                                             else None)
        if system is None and (m := _VERSION_TAIL.match(key)):
            system = _SYSTEM_BY_KEY.get(m.group(1).rstrip("."))
        if len(self._systems) >= _SYSTEM_CACHE_MAX:
            self._systems.clear()
        self._systems[raw] = system
        return system

    def map(self, system: str | None, code: str | None) -> CodeMapping:
        """Concepts of a raw (system, code); never raises on data."""
        key = (system, code)
        try:
            hit = self._cache.get(key)
        except TypeError:  # unhashable junk in place of a string
            return _NO_SYSTEM
        if hit is None:
            hit = self._map(system, code)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _map(self, raw_system: str | None, raw_code: str | None) -> CodeMapping:
        system = self.canonical_system(raw_system)
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            raw_code = str(raw_code)  # a SNOMED id that went through JSON as a number
        text = raw_code.strip() if isinstance(raw_code, str) else None
        if system is None:
            return CodeMapping(None, text if text and _ANY_CODE.fullmatch(text) else None)
        if not text:
            return CodeMapping(system, None)
        canonical = _CANONICALISERS[system](text)
        if canonical is None:
            return CodeMapping(system, None)
        code, match_key, certainty = canonical
        index = self._index.get(system, {})
        if system in PREFIX_SYSTEMS:
            found: set[str] = set()
            excluded: set[str] = set()
            exclude = self._exclude.get(system, {})
            for n in range(1, len(match_key) + 1):
                prefix = match_key[:n]
                found.update(index.get(prefix, ()))
                excluded.update(exclude.get(prefix, ()))
            concepts = tuple(sorted(found - excluded))
        else:
            concepts = tuple(sorted(index.get(match_key, ())))
        lab = self._lab_by_loinc.get(code) if system == "LOINC" else None
        return CodeMapping(system, code, concepts, lab, certainty)

    def concepts_for(self, concept: str) -> Mapping[str, tuple[str, ...]]:
        """Catalogue codes of a concept per canonical system (ICD-10: dotless prefixes)."""
        try:
            return self._sources[concept]
        except KeyError:
            raise KeyError(f"no concept {concept!r} in catalogue {self.version}") from None


# ------------------------------------------------------------------ loading
def _load(path: Path, cls: type[CodeMap]) -> CodeMap:
    def fail(where: str, problem: str) -> ConfigError:
        return ConfigError(" ".join(f"concepts file {path}{where}: {problem}".split()))

    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise fail("", "does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise fail("", str(exc)) from None
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise fail("", "field version must be a non-empty string")
    unknown = set(data) - {"version", "concept", "lab"}
    if unknown:
        raise fail("", f"unknown top-level field {sorted(unknown)[0]}")

    index: dict[str, dict[str, set[str]]] = {s: {} for s in CANONICAL_SYSTEMS}
    exclude: dict[str, dict[str, set[str]]] = {s: {} for s in ICD10_VARIANTS}
    sources: dict[str, dict[str, list[str]]] = {}
    areas: dict[str, str] = {}
    provenance: dict[str, str] = {}
    labs: dict[str, LabDefinition] = {}
    lab_loinc: dict[str, str] = {}

    for kind, allowed in (("concept", _CONCEPT_FIELDS), ("lab", _LAB_FIELDS)):
        tables = data.get(kind, {})
        if not isinstance(tables, dict):
            raise fail("", f"{kind} must be a table of [{kind}.NAME] tables")
        for name, entry in tables.items():
            where = f", {kind} {name}"
            if not isinstance(entry, dict):
                raise fail(where, "must be a table")
            if name in sources:
                raise fail(where, "name already used by a concept or lab")
            bad = sorted(set(entry) - allowed)
            if bad:
                raise fail(where, f"unknown field {bad[0]}")
            for text_field in ("area", "doc", "source"):
                if not isinstance(entry.get(text_field, ""), str):
                    raise fail(where, f"field {text_field} must be a string")
            per_system: dict[str, list[str]] = {}
            for list_field, systems in _LIST_FIELDS.items():
                if list_field not in entry:
                    continue
                codes = entry[list_field]
                if not isinstance(codes, list) or not codes:
                    raise fail(where, f"field {list_field} must be a non-empty list of codes")
                for raw in codes:
                    canonical = (_CATALOGUE_CANONICALISERS[systems[0]](raw.strip())
                                 if isinstance(raw, str) and raw.strip() else None)
                    # A catalogue entry is a bare code: no GM markers or certainty.
                    if (canonical is None or canonical[1].upper()
                            != raw.strip().upper().replace(".", "")):
                        raise fail(where, f"field {list_field}: {raw!r} is not a "
                                          f"{systems[0]} code")
                    match_key = canonical[1]
                    target = exclude if list_field == "exclude" else index
                    for system in systems:
                        target[system].setdefault(match_key, set()).add(name)
                        if list_field != "exclude":
                            per_system.setdefault(system, []).append(match_key)
            if kind == "lab" and "LOINC" not in per_system:
                raise fail(where, "missing field loinc")
            if not per_system:
                raise fail(where, "lists no codes")
            sources[name] = per_system
            if entry.get("area"):
                areas[name] = entry["area"]
            if kind == "lab":
                labs[name] = _lab(name, entry, where, fail)
                for code in per_system.get("LOINC", ()):
                    if code in lab_loinc:
                        raise fail(where, f"field loinc: {code} is also lab {lab_loinc[code]}")
                    lab_loinc[code] = name
            if not entry.get("source", "").strip():
                raise fail(where, "missing field source (the value set, phenotype or guideline its codes come from)")
            provenance[name] = entry["source"].strip()

    frozen_sources = {
        name: MappingProxyType({s: tuple(dict.fromkeys(c)) for s, c in per.items()})
        for name, per in sources.items()
    }
    return cls(
        version=version.strip(),
        index={s: {k: frozenset(v) for k, v in d.items()} for s, d in index.items()},
        exclude={s: {k: frozenset(v) for k, v in d.items()} for s, d in exclude.items()},
        labs=labs,
        sources=frozen_sources,
        areas=areas,
        provenance=provenance,
    )


def _lab(name: str, entry: dict[str, Any], where: str,
         fail: Callable[[str, str], ConfigError]) -> LabDefinition:
    unit = entry.get("unit")
    if not isinstance(unit, str) or not unit.strip():
        raise fail(where, "missing field unit (the canonical unit)")
    convert = entry.get("convert", {})
    if not isinstance(convert, dict) or not all(
        isinstance(f, int | float) and not isinstance(f, bool) for f in convert.values()
    ):
        raise fail(where, "field convert must be a table of unit = factor numbers")
    bounds = entry.get("range")
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)):
        raise fail(where, "field range must be [low, high] numbers")
    unitless = entry.get("unitless", False)
    if not isinstance(unitless, bool):
        raise fail(where, "field unitless must be true or false")
    try:
        return LabDefinition(name, unit.strip(), convert, bounds[0], bounds[1], unitless)
    except ValueError as exc:
        field = "range" if "range" in str(exc) else "convert"
        raise fail(where, f"field {field}: {exc}") from None
