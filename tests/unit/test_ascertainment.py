"""Outcome ascertainment on hand-made patient timelines, one rule per test."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from streams.catalogue.definitions import Catalogue, load_catalogue
from streams.outcomes.ascertainment import EXCLUDED, FINAL, OPEN, Observation, ascertain
from streams.outcomes.timeline import DAY_US, Fact, PatientTimeline, Published, frozen_demographics, frozen_sizes

T0 = int(datetime(2025, 3, 1, 8, 0, tzinfo=UTC).timestamp() * 1_000_000)
HOUR = 3_600_000_000
FAR = T0 + 5 * 365 * DAY_US  # a watermark long after everything
_keys = iter(range(1, 10**9))
HF = ("heart_failure", "heart_failure_broad")  # what an I50 code maps to


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def fact(kind: str, t: int, *, site: str = "NL-AMC", ref: str | None = None, concepts: tuple[str, ...] = (),
         value: float | None = None, attr: str | None = None) -> Fact:
    return Fact(t, kind, site, ref, frozenset(concepts), value, attr, next(_keys))


def timeline(*facts: Fact, birth_year: int = 1950, sex: str = "MALE") -> PatientTimeline:
    tl = PatientTimeline()
    tl.note_demographics(birth_year, sex)
    for f in facts:
        assert tl.add(f)
    return tl


def hf_stay(ref: str, admitted: int, discharged: int | None, disposition: str | None = "HOME",
            site: str = "NL-AMC", admission_type: str = "EMERGENCY") -> list[Fact]:
    facts = [fact("ADMISSION", admitted, site=site, ref=ref, attr=admission_type),
             fact("DIAGNOSIS", admitted + HOUR, site=site, ref=ref, concepts=HF)]
    if discharged is not None:
        facts.append(fact("DISCHARGE", discharged, site=site, ref=ref, attr=disposition))
    return facts


def only(catalogue: Catalogue, indicator: str, tl: PatientTimeline, watermark: int = FAR) -> Observation:
    observations = ascertain(catalogue.indicators[indicator], tl, watermark)
    assert len(observations) == 1, observations
    return observations[0]


# ----------------------------------------------------------------- death within N days
@pytest.mark.parametrize(("death_after", "expected"), [
    (30 * DAY_US, 1),            # exactly 30 x 24 h: the boundary instant is inside
    (30 * DAY_US + 1, 0),        # one microsecond later: outside
    (31 * DAY_US, 0),
    (1, 1),
])
def test_death_on_the_boundary(catalogue: Catalogue, death_after: int, expected: int) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 5 * DAY_US), fact("DEATH", T0 + death_after))
    obs = only(catalogue, "hf_mortality_30d", tl)
    assert (obs.status, obs.outcome) == (FINAL, expected)
    assert obs.horizon_end == T0 + 30 * DAY_US


def test_death_is_final_as_soon_as_seen_and_negative_only_when_the_horizon_closes(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 5 * DAY_US))
    assert only(catalogue, "hf_mortality_30d", tl, T0 + 29 * DAY_US).status == OPEN
    assert only(catalogue, "hf_mortality_30d", tl, T0 + 30 * DAY_US).outcome == 0
    tl.add(fact("DEATH", T0 + 10 * DAY_US))
    obs = only(catalogue, "hf_mortality_30d", tl, T0 + 11 * DAY_US)
    assert (obs.status, obs.outcome, obs.closed_time) == (FINAL, 1, T0 + 10 * DAY_US)


def test_in_hospital_death_by_disposition_counts_as_death(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 3 * DAY_US, disposition="DEATH"))
    assert only(catalogue, "hf_mortality_30d", tl).outcome == 1


def test_death_dated_before_its_index_excludes(catalogue: Catalogue) -> None:
    tl = timeline(fact("DEATH", T0 - DAY_US), *hf_stay("s1", T0, T0 + DAY_US))
    obs = only(catalogue, "hf_mortality_30d", tl)
    assert (obs.status, obs.exclusion) == (EXCLUDED, "index_after_death")


def test_a_stay_becomes_an_index_when_its_diagnosis_arrives_later(catalogue: Catalogue) -> None:
    admission = fact("ADMISSION", T0, ref="s1", attr="EMERGENCY")
    tl = timeline(admission)
    assert ascertain(catalogue.indicators["hf_mortality_30d"], tl, FAR) == []
    tl.add(fact("DIAGNOSIS", T0 + 6 * DAY_US, ref="s1", concepts=HF))
    assert only(catalogue, "hf_mortality_30d", tl).index_time == T0


# ----------------------------------------------------------------- readmission
def test_readmission_on_the_day_of_discharge_counts(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 5 * DAY_US),
                  fact("ADMISSION", T0 + 5 * DAY_US + 3 * HOUR, ref="s2", attr="EMERGENCY"))
    obs = only(catalogue, "hf_readmission_30d", tl)
    assert (obs.status, obs.outcome, obs.index_time) == (FINAL, 1, T0 + 5 * DAY_US)


def test_elective_readmission_does_not_count_but_missing_type_does(catalogue: Catalogue) -> None:
    elective = timeline(*hf_stay("s1", T0, T0 + 5 * DAY_US),
                        fact("ADMISSION", T0 + 10 * DAY_US, ref="s2", attr="ELECTIVE"))
    assert only(catalogue, "hf_readmission_30d", elective).outcome == 0
    missing = timeline(*hf_stay("s1", T0, T0 + 5 * DAY_US),
                       fact("ADMISSION", T0 + 10 * DAY_US, ref="s2", attr=None))
    assert only(catalogue, "hf_readmission_30d", missing).outcome == 1


def test_in_hospital_death_is_excluded_from_the_readmission_denominator(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 5 * DAY_US, disposition="DEATH"))
    obs = only(catalogue, "hf_readmission_30d", tl)
    assert (obs.status, obs.exclusion) == (EXCLUDED, "in_hospital_death")


def test_transfer_then_admission_elsewhere_is_one_hospitalisation(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 2 * DAY_US, disposition="TRANSFER", site="NL-AMC"),
                  fact("ADMISSION", T0 + 2 * DAY_US + 2 * HOUR, site="DE-CHA", ref="s2", attr="EMERGENCY"),
                  fact("DISCHARGE", T0 + 9 * DAY_US, site="DE-CHA", ref="s2", attr="HOME"))
    readmission = only(catalogue, "hf_readmission_30d", tl)
    # Not a readmission: the transfer continues the stay; the final discharge indexes, credited to its site.
    assert (readmission.outcome, readmission.index_time, readmission.site) == (0, T0 + 9 * DAY_US, "DE-CHA")
    los = only(catalogue, "hf_length_of_stay", tl)
    assert (los.value, los.site) == (9.0, "DE-CHA")
    mortality = only(catalogue, "hf_mortality_30d", tl)
    assert (mortality.site, mortality.index_time) == ("NL-AMC", T0)  # admitting site credited


def test_transfer_without_continuation_is_excluded_once_24h_have_passed(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 2 * DAY_US, disposition="TRANSFER"))
    assert ascertain(catalogue.indicators["hf_readmission_30d"], tl, T0 + 2 * DAY_US + HOUR) == []
    obs = only(catalogue, "hf_readmission_30d", tl, T0 + 3 * DAY_US)
    assert (obs.status, obs.exclusion) == (EXCLUDED, "transferred_out")


def test_transfer_home_discharge_vs_discharge(catalogue: Catalogue) -> None:
    # A discharge home followed by an admission within 24 h is a readmission, not a transfer.
    tl = timeline(*hf_stay("s1", T0, T0 + 2 * DAY_US, disposition="HOME"),
                  fact("ADMISSION", T0 + 2 * DAY_US + 2 * HOUR, site="DE-CHA", ref="s2", attr="EMERGENCY"))
    assert only(catalogue, "hf_readmission_30d", tl).outcome == 1


# ----------------------------------------------------------------- length of stay
def test_length_of_stay_in_days_of_24_hours(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 4 * DAY_US + 12 * HOUR))
    obs = only(catalogue, "hf_length_of_stay", tl)
    assert (obs.status, obs.value) == (FINAL, 4.5)


# ----------------------------------------------------------------- PSA rise
def psa(t: int, value: float) -> Fact:
    return fact("LAB_RESULT", t, concepts=("psa",), value=value)


def prostatectomy(t: int = T0) -> Fact:
    return fact("PROCEDURE", t, concepts=("radical_prostatectomy",))


def test_psa_rise_needs_confirmation_by_the_next_higher_value(catalogue: Catalogue) -> None:
    unconfirmed = timeline(prostatectomy(), psa(T0 + 90 * DAY_US, 0.25), psa(T0 + 180 * DAY_US, 0.22))
    assert only(catalogue, "pca_bcr_12m", unconfirmed).outcome == 0
    confirmed = timeline(prostatectomy(), psa(T0 + 90 * DAY_US, 0.25), psa(T0 + 180 * DAY_US, 0.4))
    obs = only(catalogue, "pca_bcr_12m", confirmed)
    assert (obs.outcome, obs.closed_time) == (1, T0 + 180 * DAY_US)


def test_psa_confirmation_after_the_horizon_does_not_count(catalogue: Catalogue) -> None:
    tl = timeline(prostatectomy(), psa(T0 + 300 * DAY_US, 0.3), psa(T0 + 370 * DAY_US, 0.5))
    assert only(catalogue, "pca_bcr_12m", tl).outcome == 0


def test_psa_before_the_post_operative_washout_is_ignored(catalogue: Catalogue) -> None:
    tl = timeline(prostatectomy(), psa(T0 + 10 * DAY_US, 3.0), psa(T0 + 20 * DAY_US, 4.0))
    assert only(catalogue, "pca_bcr_12m", tl).outcome == 0


# ----------------------------------------------------------------- MMSE decline
def mmse(t: int, value: float) -> Fact:
    return fact("LAB_RESULT", t, concepts=("mmse",), value=value)


def dementia(t: int = T0) -> Fact:
    return fact("DIAGNOSIS", t, concepts=("dementia",))


def test_missing_mmse_baseline_excludes_once_the_baseline_window_closes(catalogue: Catalogue) -> None:
    tl = timeline(dementia(), mmse(T0 + 100 * DAY_US, 20))
    assert only(catalogue, "dem_cognitive_decline_12m", tl, T0 + 10 * DAY_US).status == OPEN
    obs = only(catalogue, "dem_cognitive_decline_12m", tl, T0 + 31 * DAY_US)
    assert (obs.status, obs.exclusion) == (EXCLUDED, "missing_baseline")


def test_mmse_decline_of_three_points_from_the_closest_baseline(catalogue: Catalogue) -> None:
    tl = timeline(mmse(T0 - 80 * DAY_US, 28), mmse(T0 - 5 * DAY_US, 24), dementia(),
                  mmse(T0 + 180 * DAY_US, 22), mmse(T0 + 300 * DAY_US, 21))
    obs = only(catalogue, "dem_cognitive_decline_12m", tl)
    assert (obs.outcome, obs.closed_time, obs.covariates["baseline_mmse"]) == (1, T0 + 300 * DAY_US, 24)
    two_points = timeline(mmse(T0 - 5 * DAY_US, 24), dementia(), mmse(T0 + 180 * DAY_US, 22))
    assert only(catalogue, "dem_cognitive_decline_12m", two_points).outcome == 0


# ----------------------------------------------------------------- other shapes
def test_new_af_counts_only_the_first_diagnosis_and_strokes_after_it(catalogue: Catalogue) -> None:
    af = ("atrial_fibrillation",)
    tl = timeline(fact("DIAGNOSIS", T0, concepts=af), fact("DIAGNOSIS", T0 + 50 * DAY_US, concepts=af),
                  fact("ADMISSION", T0 + 200 * DAY_US, ref="st", attr="EMERGENCY"),
                  fact("DIAGNOSIS", T0 + 200 * DAY_US, ref="st", concepts=("ischaemic_stroke",)))
    obs = only(catalogue, "af_stroke_1y", tl)
    assert (obs.index_time, obs.outcome) == (T0, 1)


def aml_diagnosis(t: int = T0 - 3 * DAY_US) -> Fact:
    return fact("DIAGNOSIS", t, concepts=("aml",))


def induction(t: int = T0) -> Fact:
    return fact("MEDICATION", t, concepts=("aml_induction_chemotherapy",))


def test_aml_remission_by_labs_within_seven_days(catalogue: Catalogue) -> None:
    start = induction()
    labs = [aml_diagnosis(), fact("LAB_RESULT", T0 + 30 * DAY_US, concepts=("marrow_blasts",), value=3.0),
            fact("LAB_RESULT", T0 + 33 * DAY_US, concepts=("neutrophils",), value=1.4),
            fact("LAB_RESULT", T0 + 35 * DAY_US, concepts=("platelets",), value=120.0)]
    obs = only(catalogue, "aml_complete_remission", timeline(start, *labs))
    assert (obs.outcome, obs.closed_time) == (1, T0 + 35 * DAY_US)
    low_platelets = [*labs[:3], fact("LAB_RESULT", T0 + 35 * DAY_US, concepts=("platelets",), value=60.0)]
    assert only(catalogue, "aml_complete_remission", timeline(start, *low_platelets)).outcome == 0
    by_code = fact("DIAGNOSIS", T0 + 40 * DAY_US, concepts=("aml", "aml_in_remission"))
    assert only(catalogue, "aml_complete_remission", timeline(aml_diagnosis(), start, by_code)).outcome == 1


def test_epic26_response_closest_to_twelve_months(catalogue: Catalogue) -> None:
    def epic(t: int, score: float) -> Fact:
        return fact("PROM_RESPONSE", t, value=score, attr="EPIC-26|urinary_incontinence")

    tl = timeline(epic(T0 - 10 * DAY_US, 90), prostatectomy(), epic(T0 + 320 * DAY_US, 60),
                  epic(T0 + 370 * DAY_US, 70), epic(T0 + 430 * DAY_US, 80))
    assert only(catalogue, "pca_epic26_incontinence_12m", tl, T0 + 400 * DAY_US).status == OPEN
    obs = only(catalogue, "pca_epic26_incontinence_12m", tl)
    assert (obs.status, obs.value, obs.covariates["baseline_prom"]) == (FINAL, 70, 90)
    none = timeline(prostatectomy(), epic(T0 + 200 * DAY_US, 60))
    assert only(catalogue, "pca_epic26_incontinence_12m", none).exclusion == "lost_to_follow_up"


def test_dementia_outcomes_institutionalisation_and_emergency_admission(catalogue: Catalogue) -> None:
    tl = timeline(dementia(), fact("ADMISSION", T0 + 40 * DAY_US, ref="e", attr="EMERGENCY"),
                  fact("DISCHARGE", T0 + 45 * DAY_US, ref="e", attr="LONG_TERM_CARE"))
    assert only(catalogue, "dem_emergency_admission_12m", tl).outcome == 1
    assert only(catalogue, "dem_institutionalisation_12m", tl).closed_time == T0 + 45 * DAY_US
    assert only(catalogue, "dem_mortality_12m", tl).outcome == 0


def test_covariates(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("old", T0 - 200 * DAY_US, T0 - 190 * DAY_US),
                  fact("LAB_RESULT", T0 - DAY_US, concepts=("nt_probnp",), value=2980.0),
                  *hf_stay("s1", T0, T0 + 4 * DAY_US), birth_year=1940, sex="FEMALE")
    obs = ascertain(catalogue.indicators["hf_mortality_30d"], tl, FAR)[1]
    assert obs.covariates["age"] == 85 and obs.covariates["male"] == 0
    assert obs.covariates["prior_admissions_12m"] == 1
    assert obs.covariates["lab:nt_probnp:log"] == pytest.approx(8.0, abs=0.01)


# ----------------------------------------------------------------- order and idempotence
def test_arrival_order_and_redelivery_do_not_matter(catalogue: Catalogue) -> None:
    facts = [*hf_stay("s1", T0, T0 + 5 * DAY_US), fact("ADMISSION", T0 + 20 * DAY_US, ref="s2", attr=None),
             *hf_stay("s3", T0 + 60 * DAY_US, T0 + 64 * DAY_US), fact("DEATH", T0 + 70 * DAY_US),
             mmse(T0, 25), dementia(T0 + DAY_US), mmse(T0 + 100 * DAY_US, 20)]
    expected = {i: ascertain(ind, timeline(*facts), FAR) for i, ind in catalogue.indicators.items()}
    rng = random.Random(3)
    for _ in range(20):
        shuffled = facts + rng.sample(facts, 4)  # with redeliveries
        rng.shuffle(shuffled)
        tl = PatientTimeline()
        tl.note_demographics(1950, "MALE")
        for f in shuffled:
            tl.add(f)
        assert {i: ascertain(ind, tl, FAR) for i, ind in catalogue.indicators.items()} == expected


def event(event_id: str, kind: str, t: int, patient: str = "p1", **extra: object) -> dict[str, object]:
    """A NormalisedEvent (plain dict) as the tracker receives it."""
    base: dict[str, object] = {
        "event_id": event_id, "site_id": "NL-AMC", "patient_pseudonym": patient, "encounter_pseudonym": "s1",
        "event_type": kind, "event_time": t, "concepts": [], "value": None, "unit": None,
        "admission_type": None, "disposition": None, "birth_year": 1950, "sex": "MALE", "prom": None}
    base.update(extra)
    return base


def test_tracker_finalises_a_death_as_soon_as_it_arrives(catalogue: Catalogue) -> None:
    from streams.outcomes.tracker import OutcomeTracker

    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    tracker.add(event("a", "ADMISSION", T0, admission_type="EMERGENCY"))
    tracker.add(event("d", "DIAGNOSIS", T0 + HOUR, concepts=["heart_failure"]))
    opened = {o.indicator: o.status for o in tracker.collect()}
    assert opened["hf_mortality_30d"] == OPEN
    tracker.add(event("lab", "LAB_RESULT", T0 + 2 * HOUR, concepts=["nt_probnp"], value=900.0))
    # A covariate's fact changes the case mix (and the expected risk): published again, still OPEN.
    (revised,) = [o for o in tracker.collect() if o.indicator == "hf_mortality_30d"]
    assert (revised.status, revised.revision, "lab:nt_probnp:log" in revised.covariates) == (OPEN, 1, True)
    tracker.add(event("lab2", "LAB_RESULT", T0 + 20 * DAY_US, concepts=["nt_probnp"], value=950.0))
    assert [o for o in tracker.collect() if o.indicator == "hf_mortality_30d"] == []  # outside its window
    tracker.add(event("x", "DEATH", T0 + 3 * DAY_US, encounter_pseudonym=None))
    final = {o.indicator: o for o in tracker.collect()}
    assert (final["hf_mortality_30d"].status, final["hf_mortality_30d"].outcome) == (FINAL, 1)


def _advance(tracker: object, t: int) -> list[Observation]:
    """Move the watermark to ``t`` with an event no indicator uses (of a patient the tracker
    does not keep), and collect."""
    tracker.add(event(f"clock-{t}", "LAB_RESULT", t + 2 * DAY_US, patient="clock", value=1.0))  # type: ignore[attr-defined]
    return tracker.collect()  # type: ignore[attr-defined, no-any-return]


def test_an_open_horizon_closes_negative_in_the_first_batch_that_reaches_it(catalogue: Catalogue) -> None:
    from streams.outcomes.tracker import OutcomeTracker

    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    tracker.add(event("a", "ADMISSION", T0, admission_type="EMERGENCY"))
    tracker.add(event("d", "DIAGNOSIS", T0, concepts=["heart_failure"]))
    assert {o.indicator: o.status for o in tracker.collect()}["hf_mortality_30d"] == OPEN
    horizon = T0 + 30 * DAY_US
    assert [o for o in _advance(tracker, horizon - 1) if o.indicator == "hf_mortality_30d"] == []
    closed = [o for o in _advance(tracker, horizon) if o.indicator == "hf_mortality_30d"]
    assert [(o.status, o.outcome, o.closed_time) for o in closed] == [(FINAL, 0, horizon)]


def test_a_patient_waiting_for_a_horizon_is_not_evaluated_before_it(catalogue: Catalogue) -> None:
    from streams.outcomes.tracker import OutcomeTracker

    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    evaluated: list[float] = []  # days from the diagnosis to each evaluation of the only patient kept

    def advance(t: int) -> list[Observation]:
        before = tracker.evaluations
        out = _advance(tracker, t)
        evaluated.extend([(tracker.watermark - T0) / DAY_US] * (tracker.evaluations - before))
        return out

    tracker.add(event("m", "LAB_RESULT", T0 - 5 * DAY_US, concepts=["mmse"], value=24.0))
    tracker.add(event("d", "DIAGNOSIS", T0, concepts=["dementia"]))
    tracker.collect()
    assert tracker.evaluations == 1 and "clock" not in tracker.patients
    evaluated.clear()
    # the MMSE baseline window closes after 30 days; nothing is due then until the 12-month horizon
    for day in range(1, 365):
        advance(T0 + day * DAY_US)
    assert evaluated == [30]
    closed = {o.indicator: o for o in advance(T0 + 365 * DAY_US) if o.status != OPEN}
    assert evaluated == [30, 365]
    assert closed["dem_cognitive_decline_12m"].exclusion == "lost_to_follow_up"  # no MMSE after the baseline


def test_a_frozen_timeline_thaws_to_the_same_facts_and_records() -> None:
    tl = PatientTimeline()
    tl.note_demographics(1940, "FEMALE")
    tl.add(Fact(T0, "ADMISSION", "FI-HUS", "enc-1", frozenset({"heart_failure"}), None, "EMERGENCY", 11))
    tl.add(Fact(T0 + DAY_US, "LAB_RESULT", "FI-HUS", None, frozenset({"nt_probnp"}), 2500.5, None, -(2**63)))
    tl.add(Fact(T0 + 2 * DAY_US, "DISCHARGE", "DE-CHA", "enc-1", frozenset(), None, "HOME", 2**63 - 1))
    tl.published["hf_readmission_30d:ffffffffffffffff"] = Published(-(2**63), "DE-CHA", T0, T0 + 30 * DAY_US)
    tl.settled = {"af_stroke_1y": T0}
    packed = tl.freeze()
    assert frozen_sizes(packed) == (3, 1) and frozen_demographics(packed) == (1940, False)
    thawed = PatientTimeline.thaw(packed)
    assert thawed.facts == tl.facts and thawed.published == tl.published
    assert thawed.settled == {"af_stroke_1y": T0} and (thawed.birth_year, thawed.male) == (1940, False)
    assert thawed.facts[0].ref is thawed.facts[2].ref  # one copy of the encounter pseudonym
    assert PatientTimeline.thaw(PatientTimeline().freeze()).facts == []

