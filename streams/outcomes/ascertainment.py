# mypyc: compiled (the per-event path: setup.py)
"""Outcome ascertainment: from a patient's timeline to observations (pure logic).

``ascertain(indicator, timeline, watermark)`` states, for every index event of the
indicator in the timeline, what is known at that event-time watermark: OPEN (in
follow-up), FINAL (outcome seen, or horizon closed by the watermark) or EXCLUDED
(with a reason). It is a function of the facts, not of their arrival order, so the
stream (re-evaluating as facts arrive) and the batch evaluator (once, at the end)
agree. Definitions the shapes implement (also in ``rwe catalogue show``):

- horizons are N x 24 h after the index instant, the boundary instant inside;
- outcomes count strictly after the index instant, except readmissions, which count
  from the discharge instant on (a readmission on the day of discharge counts);
- an index event dated after the patient's recorded death is not at risk: excluded
  (``index_after_death``), whatever the shape (``index_after_death = "keep"`` evaluates it,
  and a death shape then excludes it as ``outcome_before_index``);
- no follow-up assessment in the window (no score after the baseline within the horizon,
  no questionnaire response in the window) excludes (``lost_to_follow_up``);
- an open stay is a pending (OPEN) length of stay until its final discharge;
- ``first`` index rule: the patient's earliest qualifying event the engine holds;
- patients are network-wide: a death or readmission at any site counts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

from streams.catalogue.definitions import Indicator
from streams.outcomes.record import EXCLUDED, FINAL, OPEN
from streams.outcomes.timeline import DAY_US, TRANSFER_GAP_US, Fact, Hospitalisation, PatientTimeline

LAB_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
UNPLANNED = frozenset({"EMERGENCY", "UNKNOWN", None})
# Exclusion reasons these rules decide (a catalogue setting may name others: prior_outcome_exclusion).
INDEX_AFTER_DEATH = "index_after_death"
LOST_TO_FOLLOW_UP = "lost_to_follow_up"
OPEN_STAY_RECHECK_US = 30 * DAY_US  # an open stay has no deadline: look at it again monthly, not every batch


class Observation(NamedTuple):
    observation_id: str
    indicator: str
    site: str
    index_time: int
    horizon_end: int
    status: str
    closed_time: int | None = None
    outcome: int | None = None
    value: float | None = None
    exclusion: str | None = None
    covariates: dict[str, float] = {}  # noqa: RUF012 - NamedTuple default, never mutated
    extra: dict[str, float] | None = None  # shape-specific case-mix values (e.g. the baseline score)
    revision: int = 0  # set by the tracker when it publishes: see Published.revision

    def signature(self) -> int:
        """Digest of what a published record of this observation says."""
        return hash((self.status, self.outcome, self.value, self.exclusion, self.closed_time))


class IndexEvent(NamedTuple):
    time: int
    site: str
    key: int
    hospitalisation: Hospitalisation | None = None


def ascertain(ind: Indicator, tl: PatientTimeline, watermark: int, *, with_covariates: bool = True
              ) -> list[Observation]:
    """Every observation of ``ind`` in ``tl`` as known at event time ``watermark``.

    ``with_covariates=False`` leaves the case-mix covariates out (the tracker adds them,
    with :func:`complete`, only to the observations it publishes: most evaluations
    change nothing).
    """
    found = _SHAPES[ind.shape](ind, tl, watermark)
    if ind.index_after_death == "exclude":
        death = tl.death_time()
        if death is not None:
            found = [_after_death(obs) if obs.index_time > death else obs for obs in found]
    return [complete(obs, ind, tl) for obs in found] if with_covariates else found


def _after_death(obs: Observation) -> Observation:
    return obs._replace(status=EXCLUDED, closed_time=None, outcome=None, value=None, exclusion=INDEX_AFTER_DEATH)


def complete(obs: Observation, ind: Indicator, tl: PatientTimeline) -> Observation:
    """``obs`` with its case-mix covariates."""
    return obs._replace(covariates=covariates(ind, tl, obs.index_time, obs.extra))


def _obs_id(ind: Indicator, key: int) -> str:
    return f"{ind.id}:{key & 0xFFFFFFFFFFFFFFFF:016x}"


# --------------------------------------------------------------------------- index events
def _fact_indexes(ind: Indicator, tl: PatientTimeline) -> list[IndexEvent]:
    sel = ind.index
    found = [IndexEvent(f.time, f.site, f.key) for f in tl.facts
             if f.kind == sel.event and (not sel.concepts or f.concepts & sel.concepts)]
    if sel.confirmed_by and found:
        within = int(sel.confirmed_within_days * DAY_US)
        confirming = [f.time for f in tl.facts if f.concepts & sel.confirmed_by]
        found = [idx for idx in found if any(abs(t - idx.time) <= within for t in confirming)]
    return found[:1] if ind.index_rule == "first" else found


def _admission_indexes(ind: Indicator, tl: PatientTimeline) -> list[IndexEvent]:
    found = []
    for h in tl.hospitalisations():
        if h.concepts & ind.index.stay_concepts and h.admitted is not None:
            site = h.first.site if ind.credit != "discharging_site" else (h.last.discharge_site or h.last.site)
            found.append(IndexEvent(h.admitted, site, h.first.admission_key, h))
    return found[:1] if ind.index_rule == "first" else found


def _indexes(ind: Indicator, tl: PatientTimeline) -> list[IndexEvent]:
    if ind.index.stay_concepts and ind.index.event == "ADMISSION":
        return _admission_indexes(ind, tl)
    return _fact_indexes(ind, tl)


# --------------------------------------------------------------------------- covariates
def covariates(ind: Indicator, tl: PatientTimeline, index_time: int, extra: dict[str, float] | None = None
               ) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in ind.covariates:
        if name == "age" and tl.birth_year is not None:
            out["age"] = float(_year(index_time) - tl.birth_year)
        elif name == "male" and tl.male is not None:
            out["male"] = 1.0 if tl.male else 0.0
        elif name == "prior_admissions_12m":
            start = index_time - 365 * DAY_US
            out[name] = float(sum(1 for f in tl.facts if f.kind == "ADMISSION" and start <= f.time < index_time))
        elif name.startswith("lab:"):
            parts = name.split(":")
            value = _latest_lab(tl, parts[1], index_time - 30 * DAY_US, index_time + DAY_US)
            if value is not None and (len(parts) == 2 or value > 0):
                out[name] = math.log(value) if len(parts) == 3 else value
        elif extra and name in extra:
            out[name] = extra[name]
    return out


def _year(time_us: int) -> int:
    # Gregorian year of a UTC instant without datetime objects (hot path).
    days = time_us // DAY_US
    return int(1970 + (days + 0.5) / 365.2425)


def _latest_lab(tl: PatientTimeline, lab: str, start: int, end: int) -> float | None:
    value = None
    for f in tl.facts:
        if f.time > end:
            break
        if f.time >= start and f.kind == "LAB_RESULT" and lab in f.concepts:
            value = f.value
    return value


# --------------------------------------------------------------------------- shapes
def _binary(ind: Indicator, tl: PatientTimeline, idx: IndexEvent, watermark: int, outcome_time: int | None,
            extra: dict[str, float] | None = None, exclusion: str | None = None) -> Observation:
    end = idx.time + ind.horizon_us
    common = (_obs_id(ind, idx.key), ind.id, idx.site, idx.time, end)
    if exclusion is not None:
        return Observation(*common, EXCLUDED, exclusion=exclusion, extra=extra)
    if outcome_time is not None and outcome_time <= end:
        return Observation(*common, FINAL, closed_time=outcome_time, outcome=1, extra=extra)
    if watermark >= end:
        return Observation(*common, FINAL, closed_time=end, outcome=0, extra=extra)
    return Observation(*common, OPEN, extra=extra)


def _death(ind: Indicator, tl: PatientTimeline, watermark: int) -> list[Observation]:
    death = tl.death_time()
    out = []
    for idx in _indexes(ind, tl):
        if death is not None and death < idx.time:
            out.append(_binary(ind, tl, idx, watermark, None, exclusion="outcome_before_index"))
        else:
            out.append(_binary(ind, tl, idx, watermark, death))
    return out


def _discharge_indexes(ind: Indicator, tl: PatientTimeline, watermark: int
                       ) -> list[tuple[Hospitalisation, IndexEvent, str | None]]:
    """Hospitalisations ending in a discharge that can index, with an exclusion reason or None."""
    found: list[tuple[Hospitalisation, IndexEvent, str | None]] = []
    for h in tl.hospitalisations():
        if not (h.concepts & ind.index.stay_concepts) or h.discharged is None:
            continue
        last = h.last
        site = (last.discharge_site or last.site) if ind.credit == "discharging_site" else h.first.site
        idx = IndexEvent(h.discharged, site, last.discharge_key, h)
        if last.disposition == "TRANSFER":
            if watermark >= h.discharged + TRANSFER_GAP_US:  # no continuation came: transferred out
                found.append((h, idx, "transferred_out"))
            continue
        found.append((h, idx, "in_hospital_death" if last.disposition == "DEATH" else None))
    return found[:1] if ind.index_rule == "first" else found


def _readmission(ind: Indicator, tl: PatientTimeline, watermark: int) -> list[Observation]:
    hosps = tl.hospitalisations()
    out = []
    for h, idx, exclusion in _discharge_indexes(ind, tl, watermark):
        readmitted = next((o.admitted for o in hosps if o is not h and o.admitted is not None
                           and o.admitted >= idx.time and o.first.admission_type in UNPLANNED), None)
        out.append(_binary(ind, tl, idx, watermark, readmitted, exclusion=exclusion))
    return out


def _length_of_stay(ind: Indicator, tl: PatientTimeline, watermark: int) -> list[Observation]:
    """Every hospitalisation of the cohort: OPEN (indexed at its admission) while the patient is
    in hospital or in transit to the next, then FINAL or EXCLUDED at the final discharge. The
    observation is the first admission's, so the pending and the final record are one."""
    out = []
    for h in tl.hospitalisations():
        if not h.concepts & ind.index.stay_concepts or h.admitted is None:
            continue
        obs_id, last = _obs_id(ind, h.first.admission_key), h.last
        if h.discharged is None or (last.disposition == "TRANSFER" and watermark < h.discharged + TRANSFER_GAP_US):
            out.append(Observation(obs_id, ind.id, last.site, h.admitted, h.admitted, OPEN))
            continue
        site = (last.discharge_site or last.site) if ind.credit == "discharging_site" else h.first.site
        common = (obs_id, ind.id, site, h.discharged, h.discharged)
        exclusion = {"TRANSFER": "transferred_out", "DEATH": "in_hospital_death"}.get(last.disposition or "")
        if exclusion is not None:
            out.append(Observation(*common, EXCLUDED, exclusion=exclusion))
        else:
            days = (h.discharged - h.admitted) / DAY_US
            out.append(Observation(*common, FINAL, closed_time=h.discharged, value=round(days, 6)))
    return out[:1] if ind.index_rule == "first" else out


def _outcome_times(ind: Indicator, tl: PatientTimeline) -> list[int]:
    """Event times at which the indicator's outcome selector is met."""
    assert ind.outcome is not None
    times = []
    for sel in ind.outcome.any_of():
        if sel.stay_concepts:
            times += [s.admitted for s in tl.stays() if s.concepts & sel.stay_concepts and s.admitted is not None
                      and (sel.event in (None, "ADMISSION"))]
        else:
            for f in tl.facts:
                if sel.event is not None and f.kind != sel.event:
                    continue
                if sel.concepts and not (f.concepts & sel.concepts):
                    continue
                if sel.admission_types and (f.attr or "UNKNOWN") not in sel.admission_types:
                    continue
                if sel.dispositions and f.attr not in sel.dispositions:
                    continue
                if sel.concepts or sel.event or sel.admission_types or sel.dispositions:
                    times.append(f.time)
        if sel.labs_all:
            times += _labs_all_times(tl, sel.labs_all, int(sel.labs_within_days * DAY_US))
    return sorted(times)


def _labs_all_times(tl: PatientTimeline, criteria: tuple[tuple[str, str, float], ...], within: int) -> list[int]:
    """Times when every lab criterion is met by a value measured within ``within`` of the others."""
    met: list[list[int]] = []
    for lab, op, threshold in criteria:
        met.append([f.time for f in tl.facts if f.kind == "LAB_RESULT" and lab in f.concepts
                    and f.value is not None and LAB_OPS[op](f.value, threshold)])
    times = []
    for anchor in sorted(set().union(*map(set, met))):
        if all(any(abs(t - anchor) <= within for t in ts) for ts in met):
            last = max(min((t for t in ts if abs(t - anchor) <= within), key=lambda t: abs(t - anchor))
                       for ts in met)
            times.append(max(anchor, last))
    return times


def _event(ind: Indicator, tl: PatientTimeline, watermark: int) -> list[Observation]:
    outcome_times = _outcome_times(ind, tl)
    # not at risk when the outcome was already met at or before the index (already in care)
    prior_exclusion = ind.params.get("prior_outcome_exclusion")
    out = []
    for idx in _indexes(ind, tl):
        if prior_exclusion is not None and outcome_times and outcome_times[0] <= idx.time:
            out.append(_binary(ind, tl, idx, watermark, None, exclusion=prior_exclusion))
            continue
        first = next((t for t in outcome_times if t > idx.time), None)
        out.append(_binary(ind, tl, idx, watermark, first))
    return out


def _lab_rise(ind: Indicator, tl: PatientTimeline, watermark: int) -> list[Observation]:
    lab, threshold = ind.params["lab"], float(ind.params["threshold"])
    after = int(float(ind.params["after_days"]) * DAY_US)
    out = []
    for idx in _indexes(ind, tl):
        values = [(f.time, f.value) for f in tl.facts if f.kind == "LAB_RESULT" and lab in f.concepts
                  and f.value is not None and f.time >= idx.time + after]
        confirmed = None
        for (_t1, v1), (t2, v2) in itertools.pairwise(values):
            if v1 > threshold and v2 > v1:  # consecutive: the next value confirms the rise
                confirmed = t2
                break
        out.append(_binary(ind, tl, idx, watermark, confirmed))
    return out


def _score_drop(ind: Indicator, tl: PatientTimeline, watermark: int) -> list[Observation]:
    lab, drop = ind.params["lab"], float(ind.params["drop"])
    before = int(float(ind.params["baseline_before_days"]) * DAY_US)
    after = int(float(ind.params["baseline_after_days"]) * DAY_US)
    out = []
    for idx in _indexes(ind, tl):
        scores = [(f.time, f.value) for f in tl.facts if f.kind == "LAB_RESULT" and lab in f.concepts
                  and f.value is not None]
        candidates = [(abs(t - idx.time), t, v) for t, v in scores if idx.time - before <= t <= idx.time + after]
        if not candidates:
            exclusion = "missing_baseline" if watermark >= idx.time + after else None
            obs = _binary(ind, tl, idx, watermark, None, exclusion=exclusion)
            out.append(obs._replace(status=OPEN, closed_time=None, outcome=None) if exclusion is None else obs)
            continue
        _dist, base_t, base_v = min(candidates)  # closest; a tie goes to the earlier
        declined = next((t for t, v in scores if t > base_t and v <= base_v - drop), None)
        extra = {"baseline_mmse": base_v}
        end = idx.time + ind.horizon_us
        if (watermark >= end and ind.params.get("without_follow_up", "exclude") == "exclude"
                and not any(base_t < t <= end for t, _v in scores)):
            out.append(_binary(ind, tl, idx, watermark, None, extra, exclusion=LOST_TO_FOLLOW_UP))
        else:
            out.append(_binary(ind, tl, idx, watermark, declined, extra=extra))
    return out


def _value_at(ind: Indicator, tl: PatientTimeline, watermark: int) -> list[Observation]:
    prom = ind.params["prom"]
    attr = f"{prom['instrument']}|{prom['domain']}"
    window = int(float(ind.params["window_days"]) * DAY_US)
    out = []
    for idx in _indexes(ind, tl):
        target = idx.time + ind.horizon_us
        end = target + window
        responses = [(f.time, f.value) for f in tl.facts
                     if f.kind == "PROM_RESPONSE" and f.attr == attr and f.value is not None]
        baseline = [v for t, v in responses if idx.time - 90 * DAY_US <= t <= idx.time and v is not None]
        extra = {"baseline_prom": baseline[-1]} if baseline else None
        common = (_obs_id(ind, idx.key), ind.id, idx.site, idx.time, end)
        if watermark < end:
            out.append(Observation(*common, OPEN, extra=extra))
            continue
        in_window = [(abs(t - target), -t, v) for t, v in responses if target - window <= t <= end]
        if not in_window:
            out.append(Observation(*common, EXCLUDED, exclusion=LOST_TO_FOLLOW_UP, extra=extra))
        else:
            _d, _neg_t, value = min(in_window)  # closest to the target; a tie goes to the later
            out.append(Observation(*common, FINAL, closed_time=end, value=value, extra=extra))
    return out


_SHAPES: dict[str, Callable[[Indicator, PatientTimeline, int], list[Observation]]] = {
    "death": _death,
    "readmission": _readmission,
    "length_of_stay": _length_of_stay,
    "event": _event,
    "lab_rise": _lab_rise,
    "score_drop": _score_drop,
    "value_at": _value_at,
}


def next_deadline(obs: Observation, ind: Indicator, watermark: int) -> int:
    """The event time after which an OPEN observation must be looked at again: the first of
    its deadlines still ahead of ``watermark`` (a score drop's baseline window closes before
    its horizon; an open stay's discharge is an event, not a deadline)."""
    if ind.shape == "length_of_stay":
        return watermark - (watermark - obs.index_time) % OPEN_STAY_RECHECK_US + OPEN_STAY_RECHECK_US
    if ind.shape == "score_drop":
        baseline_closes = obs.index_time + int(float(ind.params["baseline_after_days"]) * DAY_US)
        if watermark < baseline_closes < obs.horizon_end:
            return baseline_closes
    return obs.horizon_end


def transfer_deadlines(tl: PatientTimeline) -> list[int]:
    """Times at which a transfer-out without continuation becomes final."""
    if not any(f.attr == "TRANSFER" for f in tl.facts):  # no stays to build (most evaluations)
        return []
    return [h.discharged + TRANSFER_GAP_US for h in tl.hospitalisations()
            if h.awaiting_transfer() and h.discharged is not None]


def fact_is_index_candidate(ind: Indicator, fact: Fact) -> bool:
    sel = ind.index
    if sel.stay_concepts:
        return bool(fact.concepts & sel.stay_concepts)
    return fact.kind == sel.event and bool(not sel.concepts or fact.concepts & sel.concepts)
