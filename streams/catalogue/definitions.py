"""The condition catalogue: indicator definitions loaded from ``streams/catalogue/indicators/``.

One TOML file per disease area; each ``[indicator.<id>]`` table declares a *shape*
(death, readmission, length_of_stay, event, lab_rise, score_drop, value_at) and the
shape's parameters, so a new indicator or condition of a known shape needs no code,
and optionally a risk model over its covariates (``streams/catalogue/risk.py``).
Loading validates everything and fails with one line naming file, indicator and
field. The catalogue version (declared version + content digest) travels with every
observation and snapshot.
"""

from __future__ import annotations

import functools
import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from streams.catalogue.risk import RiskModel, parse_model
from streams.clinical.codes import CodeMap
from streams.clinical.proms import prom_key
from streams.errors import ConfigError
from streams.vocabulary.time import DAY_US

DEFAULT_DIR = Path(__file__).resolve().parent / "indicators"
CATALOGUE_VERSION = "2026.12.2"
EVENT_TYPES = ("ADMISSION", "DISCHARGE", "DIAGNOSIS", "PROCEDURE", "LAB_RESULT", "MEDICATION", "PROM_RESPONSE",
               "DEATH", "WARD_TRANSFER", "CARE_HOME_ADMISSION")
SHAPES: dict[str, tuple[str, ...]] = {
    # shape -> parameters it requires beyond the common ones
    "death": (),
    "readmission": (),
    "length_of_stay": (),
    "event": ("outcome",),
    "lab_rise": ("lab", "threshold", "after_days"),
    "score_drop": ("lab", "drop", "baseline_before_days", "baseline_after_days"),
    "value_at": ("prom", "window_days"),
}
STAY_SHAPES = frozenset({"readmission", "length_of_stay"})
CONTINUOUS_SHAPES = frozenset({"length_of_stay", "value_at"})
INDEX_RULES = ("every", "first")
CREDITS = ("admitting_site", "discharging_site", "index_site")
COMMON_KEYS = {"title", "shape", "kind", "unit", "index", "horizon_days", "index_rule", "credit", "outcome_doc",
               "exclusions", "covariates", "outcome", "risk", "better", "index_after_death"}
BETTER = ("lower", "higher")  # which way the indicator improves: most outcomes are adverse events
PARAM_KEYS = {"lab", "threshold", "after_days", "drop", "baseline_before_days", "baseline_after_days", "prom",
              "window_days", "without_follow_up", "prior_outcome_exclusion"}
SELECTOR_KEYS = {"event", "concepts", "stay_concepts", "admission_types", "dispositions", "labs_all",
                 "labs_within_days", "confirmed_by", "confirmed_within_days"}
# What an index event dated after the patient's recorded death is: excluded (index_after_death),
# or evaluated like any other ("keep").
AFTER_DEATH = ("exclude", "keep")
# score_drop without a follow-up score in the horizon: excluded (lost_to_follow_up), or a negative.
WITHOUT_FOLLOW_UP = ("exclude", "negative")
REASON_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_")
COVARIATE_NAMES = ("age", "male", "prior_admissions_12m", "baseline_mmse", "baseline_prom")
LAB_OPS = ("<", "<=", ">", ">=")


@dataclass(frozen=True)
class EventSelector:
    """Which facts an index or outcome is: event type and concept or stay conditions."""

    event: str | None = None
    concepts: frozenset[str] = frozenset()
    stay_concepts: frozenset[str] = frozenset()
    admission_types: frozenset[str] = frozenset()
    dispositions: frozenset[str] = frozenset()
    labs_all: tuple[tuple[str, str, float], ...] = ()
    labs_within_days: float = 7.0
    # an index event counts only with a fact of one of these concepts within the days either side
    confirmed_by: frozenset[str] = frozenset()
    confirmed_within_days: float = 30.0
    # an outcome is met by this selector or any of these (an outcome given as a list of tables)
    alternatives: tuple[EventSelector, ...] = ()

    def any_of(self) -> tuple[EventSelector, ...]:
        return (self, *self.alternatives)


@dataclass(frozen=True, eq=False)
class Indicator:
    id: str
    area: str
    title: str
    shape: str
    kind: str                      # "proportion" or "continuous"
    unit: str | None
    index: EventSelector
    horizon_days: float            # N x 24 h after the index instant, boundary inside
    index_rule: str                # "every" qualifying index event, or the patient's "first"
    credit: str                    # which site the observation is credited to
    outcome: EventSelector | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    covariates: tuple[str, ...] = ()
    outcome_doc: str = ""
    exclusions: tuple[str, ...] = ()
    risk: RiskModel | None = None  # expected outcome from the case mix (streams/catalogue/risk.py)
    better: str = "lower"          # "higher" for a good outcome (remission) or a score where higher is better
    index_after_death: str = "exclude"  # see AFTER_DEATH
    file: str = ""

    @functools.cached_property
    def horizon_us(self) -> int:
        return int(self.horizon_days * DAY_US)

    @functools.cached_property
    def triggers(self) -> tuple[frozenset[str], frozenset[str]]:
        """(event types, concepts) of facts that can change this indicator's observations,
        their case-mix covariates included (a late lab result revises the expected risk)."""
        kinds: set[str] = set()
        concepts: set[str] = set()
        outcomes = self.outcome.any_of() if self.outcome else ()
        for n, sel in enumerate((self.index, *outcomes)):
            concepts |= (sel.concepts | sel.stay_concepts | sel.confirmed_by
                         | {lab for lab, _op, _v in sel.labs_all})
            if sel.stay_concepts or sel.admission_types or sel.dispositions or n > 0:  # n > 0: an outcome
                kinds |= {sel.event} if sel.event else set()
            if sel.stay_concepts:
                kinds |= {"ADMISSION", "DISCHARGE"}
        if self.shape == "death" or self.index_after_death == "exclude":  # a death, or a discharge by death
            kinds |= {"DEATH", "DISCHARGE"}
        if self.shape in ("readmission", "length_of_stay"):
            kinds |= {"ADMISSION", "DISCHARGE"}
        if "lab" in self.params:
            concepts.add(self.params["lab"])
        if self.shape == "value_at":
            kinds.add("PROM_RESPONSE")
        for name in self.covariates:
            if name == "prior_admissions_12m":
                kinds.add("ADMISSION")
            elif name.startswith("lab:"):
                concepts.add(name.split(":")[1])
        return frozenset(kinds), frozenset(concepts)

    def describe(self) -> dict[str, Any]:
        """Everything the definition states, for ``rwe catalogue show``."""
        return {
            "id": self.id, "area": self.area, "title": self.title, "shape": self.shape, "kind": self.kind,
            "unit": self.unit, "index": _selector_text(self.index), "index_rule": self.index_rule,
            "horizon": f"{self.horizon_days:g} x 24 h after the index instant (boundary inside)",
            "credit": self.credit, "outcome": self.outcome_doc, "better": self.better,
            "index_after_death": self.index_after_death,
            **({"outcome_selector": _selector_text(self.outcome)} if self.outcome else {}),
            **dict(self.params), "exclusions": list(self.exclusions), "covariates": list(self.covariates),
            "risk": self.risk.describe() if self.risk else None, "file": self.file,
        }


@dataclass(frozen=True)
class Catalogue:
    version: str
    indicators: Mapping[str, Indicator]

    def by_area(self) -> dict[str, list[Indicator]]:
        areas: dict[str, list[Indicator]] = {}
        for ind in self.indicators.values():
            areas.setdefault(ind.area, []).append(ind)
        return areas

    @property
    def max_horizon_us(self) -> int:
        longest = max((i.horizon_days + float(i.params.get("window_days", 0)) for i in self.indicators.values()),
                      default=0.0)
        return int(longest * DAY_US)

    def relevant_concepts(self) -> frozenset[str]:
        """Concepts any index, outcome or covariate looks at: facts without them are not kept."""
        found: set[str] = set()
        for ind in self.indicators.values():
            for sel in (ind.index, *(ind.outcome.any_of() if ind.outcome else ())):
                found |= (sel.concepts | sel.stay_concepts | sel.confirmed_by
                          | {lab for lab, _op, _v in sel.labs_all})
            if "lab" in ind.params:
                found.add(ind.params["lab"])
            found |= {c.split(":")[1] for c in ind.covariates if c.startswith("lab:")}
        return frozenset(found)

    def prom_keys(self) -> frozenset[tuple[str, str]]:
        """(instrument, domain) of every tracked questionnaire domain, canonical (streams.clinical.proms)."""
        return frozenset((i.params["prom"]["instrument"], i.params["prom"]["domain"])
                         for i in self.indicators.values() if "prom" in i.params)


def _selector_text(sel: EventSelector) -> str:
    parts = [sel.event or "any event"]
    if sel.concepts:
        parts.append(f"with concept {' or '.join(sorted(sel.concepts))}")
    if sel.stay_concepts:
        parts.append(f"of a stay coded {' or '.join(sorted(sel.stay_concepts))}")
    if sel.admission_types:
        parts.append(f"admission type {' or '.join(sorted(sel.admission_types))}")
    if sel.dispositions:
        parts.append(f"disposition {' or '.join(sorted(sel.dispositions))}")
    if sel.labs_all:
        labs = " and ".join(f"{lab} {op} {v:g}" for lab, op, v in sel.labs_all)
        parts.append(f"or labs {labs} within {sel.labs_within_days:g} days")
    if sel.confirmed_by:
        parts.append(f"confirmed by {' or '.join(sorted(sel.confirmed_by))} within "
                     f"{sel.confirmed_within_days:g} days either side")
    return " or ".join([" ".join(parts), *(_selector_text(alt) for alt in sel.alternatives)])


def load_catalogue(directory: Path | None = None, code_map: CodeMap | None = None) -> Catalogue:
    """Every indicator of every area file in ``directory``, validated."""
    directory = Path(directory or DEFAULT_DIR)
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise ConfigError(f"no indicator files (*.toml) in {directory}")
    code_map = code_map or CodeMap.load()
    known = _known_concepts(code_map)
    digest = hashlib.sha256()
    digest.update(f"codes {code_map.version}\0".encode())  # code lists decide cohorts too
    indicators: dict[str, Indicator] = {}
    for path in files:
        text = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + text)
        try:
            data = tomllib.loads(text.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path.name}: not valid TOML: {exc}") from None
        area = data.get("area")
        if not isinstance(area, str) or not area:
            raise ConfigError(f"{path.name}: missing area")
        for ind_id, spec in (data.get("indicator") or {}).items():
            if ind_id in indicators:
                raise ConfigError(f"{path.name}: indicator {ind_id} is also defined in {indicators[ind_id].file}")
            indicators[ind_id] = _indicator(path.name, area, ind_id, spec, known)
    if not indicators:
        raise ConfigError(f"no [indicator.*] tables in {directory}")
    return Catalogue(f"{CATALOGUE_VERSION}+{digest.hexdigest()[:8]}", indicators)


def _known_concepts(code_map: CodeMap) -> frozenset[str]:
    return frozenset(code_map.concept_names) | frozenset(code_map.labs)


def _indicator(file: str, area: str, ind_id: str, spec: Any, known: frozenset[str]) -> Indicator:
    def fail(fieldname: str, problem: str) -> ConfigError:
        return ConfigError(f"{file}: indicator {ind_id}: {fieldname}: {problem}")

    if not isinstance(spec, dict):
        raise fail("definition", "must be a table")
    unknown = set(spec) - COMMON_KEYS - PARAM_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], "unknown field")
    shape = spec.get("shape")
    if shape not in SHAPES:
        raise fail("shape", f"must be one of {', '.join(SHAPES)}, not {shape!r}")
    for required in ("title", "index", "horizon_days", *SHAPES[shape]):
        if required not in spec:
            raise fail(required, f"required by shape {shape}")
    kind = spec.get("kind", "continuous" if shape in CONTINUOUS_SHAPES else "proportion")
    if kind != ("continuous" if shape in CONTINUOUS_SHAPES else "proportion"):
        raise fail("kind", f"shape {shape} is {'continuous' if shape in CONTINUOUS_SHAPES else 'a proportion'}")
    horizon = spec["horizon_days"]
    if not isinstance(horizon, (int, float)) or isinstance(horizon, bool) or horizon < 0:
        raise fail("horizon_days", "must be a number of days >= 0")
    index_rule = spec.get("index_rule", "every")
    if index_rule not in INDEX_RULES:
        raise fail("index_rule", f"must be one of {', '.join(INDEX_RULES)}")
    credit = spec.get("credit", "index_site")
    if credit not in CREDITS:
        raise fail("credit", f"must be one of {', '.join(CREDITS)}")
    index = _selector(spec["index"], "index", known, fail)
    if shape in STAY_SHAPES and (index.event != "DISCHARGE" or not index.stay_concepts):
        raise fail("index", f"shape {shape} indexes a DISCHARGE with stay_concepts")
    if index.event is None:
        raise fail("index.event", "required")
    outcome = _outcome(spec["outcome"], known, fail) if "outcome" in spec else None
    params = {k: spec[k] for k in PARAM_KEYS if k in spec}
    for name in ("lab",):
        if name in params and params[name] not in known:
            raise fail(name, f"unknown lab concept {params[name]!r}")
    for name in ("threshold", "after_days", "drop", "baseline_before_days", "baseline_after_days", "window_days"):
        if name in params and (not isinstance(params[name], (int, float)) or params[name] < 0):
            raise fail(name, "must be a number >= 0")
    if "prom" in params:
        prom = params["prom"]
        if not isinstance(prom, dict) or set(prom) != {"instrument", "domain"} or not all(
                isinstance(v, str) for v in prom.values()):
            raise fail("prom", "must be { instrument = ..., domain = ... }")
        params["prom"] = dict(zip(("instrument", "domain"), prom_key(prom["instrument"], prom["domain"]),
                                  strict=True))
    if "without_follow_up" in params and (shape != "score_drop"
                                          or params["without_follow_up"] not in WITHOUT_FOLLOW_UP):
        raise fail("without_follow_up", f"a score_drop setting, one of {', '.join(WITHOUT_FOLLOW_UP)}")
    if "prior_outcome_exclusion" in params:
        reason = params["prior_outcome_exclusion"]
        if shape != "event" or not isinstance(reason, str) or not reason or set(reason) - REASON_CHARS:
            raise fail("prior_outcome_exclusion", "an event-shape setting: the exclusion reason, snake_case")
    after_death = spec.get("index_after_death", "exclude")
    if after_death not in AFTER_DEATH:
        raise fail("index_after_death", f"must be one of {', '.join(AFTER_DEATH)}")
    covariates = spec.get("covariates", [])
    if not isinstance(covariates, list):
        raise fail("covariates", "must be a list")
    for cov in covariates:
        if not _valid_covariate(cov, known):
            raise fail("covariates", f"unknown covariate {cov!r} (names: {', '.join(COVARIATE_NAMES)}, "
                       "or lab:<lab>[:log])")
    exclusions = spec.get("exclusions", [])
    better = spec.get("better", "lower")
    if better not in BETTER:
        raise fail("better", f"must be one of {', '.join(BETTER)}, not {better!r}")
    risk = parse_model(spec["risk"], kind == "continuous", tuple(covariates), fail) if "risk" in spec else None
    return Indicator(
        id=ind_id, area=area, title=str(spec["title"]), shape=shape, kind=kind, unit=spec.get("unit"),
        index=index, horizon_days=float(horizon), index_rule=index_rule, credit=credit, outcome=outcome,
        params=params, covariates=tuple(covariates), outcome_doc=str(spec.get("outcome_doc", "")),
        exclusions=tuple(exclusions), risk=risk, better=better, index_after_death=after_death, file=file)


def _outcome(raw: Any, known: frozenset[str], fail: Any) -> EventSelector:
    """An outcome table, or a list of them (met by any)."""
    if not isinstance(raw, list):
        return _selector(raw, "outcome", known, fail)
    if not raw:
        raise fail("outcome", "an empty list")
    first, *rest = (_selector(alt, f"outcome[{i}]", known, fail) for i, alt in enumerate(raw))
    return replace(first, alternatives=tuple(rest))


def _selector(raw: Any, where: str, known: frozenset[str], fail: Any) -> EventSelector:
    if not isinstance(raw, dict):
        raise fail(where, "must be a table like { event = ..., concepts = [...] }")
    unknown = set(raw) - SELECTOR_KEYS
    if unknown:
        raise fail(f"{where}.{sorted(unknown)[0]}", "unknown field")
    event = raw.get("event")
    if event is not None and event not in EVENT_TYPES:
        raise fail(f"{where}.event", f"must be one of {', '.join(EVENT_TYPES)}")

    def names(key: str, allowed: Iterable[str] | None = None) -> frozenset[str]:
        values = raw.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise fail(f"{where}.{key}", "must be a list of names")
        for v in values:
            if allowed is not None and v not in allowed:
                raise fail(f"{where}.{key}", f"unknown {v!r}")
        return frozenset(values)

    labs_all = []
    for entry in raw.get("labs_all", []):
        if (not isinstance(entry, list) or len(entry) != 3 or entry[0] not in known or entry[1] not in LAB_OPS
                or not isinstance(entry[2], (int, float))):
            raise fail(f"{where}.labs_all", f"entries are [lab, one of {' '.join(LAB_OPS)}, number], not {entry!r}")
        labs_all.append((entry[0], entry[1], float(entry[2])))
    within = raw.get("confirmed_within_days", 30.0)
    if not isinstance(within, (int, float)) or isinstance(within, bool) or within < 0:
        raise fail(f"{where}.confirmed_within_days", "must be a number of days >= 0")
    return EventSelector(
        event=event, concepts=names("concepts", known), stay_concepts=names("stay_concepts", known),
        admission_types=names("admission_types", ("EMERGENCY", "ELECTIVE", "UNKNOWN")),
        dispositions=names("dispositions", ("HOME", "TRANSFER", "DEATH", "LONG_TERM_CARE", "OTHER", "UNKNOWN")),
        labs_all=tuple(labs_all), labs_within_days=float(raw.get("labs_within_days", 7.0)),
        confirmed_by=names("confirmed_by", known), confirmed_within_days=float(within))


def _valid_covariate(cov: Any, known: frozenset[str]) -> bool:
    if not isinstance(cov, str):
        return False
    if cov in COVARIATE_NAMES:
        return True
    parts = cov.split(":")
    return parts[0] == "lab" and len(parts) in (2, 3) and parts[1] in known and (len(parts) == 2 or parts[2] == "log")
