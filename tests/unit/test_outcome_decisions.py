"""The definitions decided in issue 12 ("Outcomes a registry can sign off"), one per test, on
hand-made timelines: each fails on the rules as they were before the decision."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from conftest import clinical_event
from test_ascertainment import (
    FAR,
    HF,
    HOUR,
    T0,
    aml_diagnosis,
    dementia,
    event,
    fact,
    hf_stay,
    induction,
    mmse,
    only,
    prostatectomy,
    psa,
    timeline,
)

from streams.catalogue.definitions import DEFAULT_DIR, Catalogue, Indicator, load_catalogue
from streams.clinical.codes import CodeMap
from streams.errors import ConfigError
from streams.outcomes.ascertainment import EXCLUDED, FINAL, OPEN, ascertain, next_deadline
from streams.outcomes.timeline import DAY_US, Fact, PatientTimeline, fact_from_event
from streams.outcomes.tracker import OutcomeTracker
from streams.runtime import topics
from streams.runtime.memory import InMemoryDriver
from streams.settings import DEV, Settings
from streams.wire import schemas


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def with_params(ind: Indicator, **params: object) -> Indicator:
    return dataclasses.replace(ind, params={**ind.params, **params})


# ----------------------------------------------------------------- heart failure: broad definition
def test_a_broad_heart_failure_code_enters_the_heart_failure_cohorts(catalogue: Catalogue) -> None:
    # I11.0 (hypertensive heart disease with HF) and I42 map to heart_failure_broad only.
    tl = timeline(fact("ADMISSION", T0, ref="s1", attr="EMERGENCY"),
                  fact("DIAGNOSIS", T0 + HOUR, ref="s1", concepts=("heart_failure_broad",)),
                  fact("DISCHARGE", T0 + 3 * DAY_US, ref="s1", attr="HOME"))
    for indicator in ("hf_mortality_30d", "hf_readmission_30d", "hf_length_of_stay"):
        assert only(catalogue, indicator, tl).status == FINAL


# ----------------------------------------------------------------- lost to follow-up
def test_no_mmse_after_the_baseline_is_lost_to_follow_up_not_no_decline(catalogue: Catalogue) -> None:
    ind = catalogue.indicators["dem_cognitive_decline_12m"]
    tl = timeline(mmse(T0 - 5 * DAY_US, 24), dementia(), mmse(T0 + 400 * DAY_US, 18))  # the later one: too late
    assert only(catalogue, ind.id, tl, T0 + 364 * DAY_US).status == OPEN
    obs = only(catalogue, ind.id, tl)
    assert (obs.status, obs.exclusion, obs.outcome) == (EXCLUDED, "lost_to_follow_up", None)
    followed = timeline(mmse(T0 - 5 * DAY_US, 24), dementia(), mmse(T0 + 300 * DAY_US, 23))
    assert (only(catalogue, ind.id, followed).status, only(catalogue, ind.id, followed).outcome) == (FINAL, 0)
    # the catalogue setting: without_follow_up = "negative" counts them as no decline
    assert ascertain(with_params(ind, without_follow_up="negative"), tl, FAR)[0].outcome == 0


def test_no_epic26_response_in_the_window_is_lost_to_follow_up(catalogue: Catalogue) -> None:
    tl = timeline(prostatectomy(), fact("PROM_RESPONSE", T0 + 200 * DAY_US, value=60.0,
                                        attr="EPIC-26|urinary_incontinence"))
    obs = only(catalogue, "pca_epic26_incontinence_12m", tl)
    assert (obs.status, obs.exclusion) == (EXCLUDED, "lost_to_follow_up")


# ----------------------------------------------------------------- index after death
def _index_events_after_a_death() -> PatientTimeline:
    """A death, then an index event of every area (a feed that contradicts itself)."""
    return timeline(
        fact("DEATH", T0 - 10 * DAY_US),
        *hf_stay("s1", T0, T0 + 4 * DAY_US),
        fact("DIAGNOSIS", T0 + HOUR, ref="s1", concepts=("acute_myocardial_infarction",)),
        fact("DIAGNOSIS", T0, concepts=("atrial_fibrillation",)),
        prostatectomy(), psa(T0 + 60 * DAY_US, 0.3), psa(T0 + 90 * DAY_US, 0.5),
        aml_diagnosis(), induction(),
        mmse(T0 - 5 * DAY_US, 24), dementia(), mmse(T0 + 100 * DAY_US, 18),
        fact("PROM_RESPONSE", T0 + 365 * DAY_US, value=70.0, attr="EPIC-26|urinary_incontinence"))


def test_an_index_after_the_recorded_death_is_excluded_in_every_shape(catalogue: Catalogue) -> None:
    tl = _index_events_after_a_death()
    shapes = set()
    for ind in catalogue.indicators.values():
        observations = ascertain(ind, tl, FAR)
        assert observations, ind.id
        for obs in observations:
            assert (obs.status, obs.exclusion, obs.outcome, obs.value) == (EXCLUDED, "index_after_death", None,
                                                                             None), obs
        shapes.add(ind.shape)
    assert shapes == {"death", "readmission", "length_of_stay", "event", "lab_rise", "score_drop", "value_at"}


def test_index_after_death_keep_evaluates_it_as_before(catalogue: Catalogue) -> None:
    kept = dataclasses.replace(catalogue.indicators["af_stroke_1y"], index_after_death="keep")
    assert ascertain(kept, _index_events_after_a_death(), FAR)[0].outcome == 0
    mortality = dataclasses.replace(catalogue.indicators["hf_mortality_30d"], index_after_death="keep")
    assert ascertain(mortality, _index_events_after_a_death(), FAR)[0].exclusion == "outcome_before_index"


def test_a_death_at_the_discharge_instant_is_not_after_the_index(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 3 * DAY_US, disposition="DEATH"))
    assert only(catalogue, "hf_readmission_30d", tl).exclusion == "in_hospital_death"
    assert only(catalogue, "hf_mortality_30d", tl).outcome == 1


# ----------------------------------------------------------------- long-term care
def care_home(t: int) -> Fact:
    return fact("CARE_HOME_ADMISSION", t)


@pytest.mark.parametrize("before", [
    [care_home(T0 - 100 * DAY_US)],
    [fact("ADMISSION", T0 - 30 * DAY_US, ref="e", attr="EMERGENCY"),
     fact("DISCHARGE", T0 - 20 * DAY_US, ref="e", attr="LONG_TERM_CARE")],
    [care_home(T0)],  # the index instant itself: outcomes count strictly after it
])
def test_a_patient_already_in_long_term_care_is_not_at_risk(catalogue: Catalogue, before: list[Fact]) -> None:
    tl = timeline(*before, dementia(), care_home(T0 + 50 * DAY_US))
    obs = only(catalogue, "dem_institutionalisation_12m", tl)
    assert (obs.status, obs.exclusion) == (EXCLUDED, "already_in_long_term_care")
    assert only(catalogue, "dem_mortality_12m", tl).status == FINAL  # at risk of the others


def test_a_care_home_admission_is_the_institutionalisation_outcome(catalogue: Catalogue) -> None:
    obs = only(catalogue, "dem_institutionalisation_12m", timeline(dementia(), care_home(T0 + 50 * DAY_US)))
    assert (obs.status, obs.outcome, obs.closed_time) == (FINAL, 1, T0 + 50 * DAY_US)


def test_the_tracker_keeps_a_care_home_admission_and_closes_on_it(catalogue: Catalogue) -> None:
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    tracker.add(event("d", "DIAGNOSIS", T0, concepts=["dementia"], encounter_pseudonym=None))
    assert {o.indicator: o.status for o in tracker.collect()}["dem_institutionalisation_12m"] == OPEN
    tracker.add(event("c", "CARE_HOME_ADMISSION", T0 + 40 * DAY_US, encounter_pseudonym=None))
    closed = {o.indicator: o for o in tracker.collect()}
    assert (closed["dem_institutionalisation_12m"].status, closed["dem_institutionalisation_12m"].outcome) == (
        FINAL, 1)


# ----------------------------------------------------------------- AML induction needs an AML diagnosis
@pytest.mark.parametrize(("diagnosis", "indexed"), [
    (None, False),                        # induction alone is not a cohort entry
    (T0 - 3 * DAY_US, True),
    (T0 + 20 * DAY_US, True),             # any order: the diagnosis may be coded after induction starts
    (T0 - 30 * DAY_US, True),             # the boundary is inside
    (T0 - 30 * DAY_US - 1, False),
    (T0 + 31 * DAY_US, False),
])
def test_aml_induction_indexes_only_with_an_aml_diagnosis_within_30_days(
        catalogue: Catalogue, diagnosis: int | None, indexed: bool) -> None:
    facts = [induction()] + ([] if diagnosis is None else [aml_diagnosis(diagnosis)])
    for indicator in ("aml_early_death_30d", "aml_early_death_60d", "aml_complete_remission"):
        found = ascertain(catalogue.indicators[indicator], timeline(*facts), FAR)
        assert [o.index_time for o in found] == ([T0] if indexed else [])


def test_a_late_aml_diagnosis_wakes_the_induction(catalogue: Catalogue) -> None:
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    tracker.add(event("m", "MEDICATION", T0, concepts=["aml_induction_chemotherapy"]))
    assert [o for o in tracker.collect() if o.indicator.startswith("aml")] == []
    tracker.add(event("d", "DIAGNOSIS", T0 + DAY_US, concepts=["aml"]))
    assert {o.indicator for o in tracker.collect()} >= {"aml_early_death_30d", "aml_complete_remission"}


# ----------------------------------------------------------------- open stays
def test_an_open_stay_is_a_pending_length_of_stay_then_final_at_discharge(catalogue: Catalogue) -> None:
    admitted = [fact("ADMISSION", T0, ref="s1", attr="EMERGENCY"),
                fact("DIAGNOSIS", T0 + HOUR, ref="s1", concepts=HF)]
    tl = timeline(*admitted)
    pending = only(catalogue, "hf_length_of_stay", tl, T0 + 2 * DAY_US)
    assert (pending.status, pending.index_time, pending.value) == (OPEN, T0, None)
    tl.add(fact("DISCHARGE", T0 + 6 * DAY_US, ref="s1", attr="HOME"))
    final = only(catalogue, "hf_length_of_stay", tl, T0 + 7 * DAY_US)
    assert (final.status, final.value, final.index_time) == (FINAL, 6.0, T0 + 6 * DAY_US)
    assert final.observation_id == pending.observation_id  # the pending record is replaced, not doubled


def test_a_stay_in_transit_to_the_next_hospital_stays_pending(catalogue: Catalogue) -> None:
    tl = timeline(*hf_stay("s1", T0, T0 + 2 * DAY_US, disposition="TRANSFER"))
    first = only(catalogue, "hf_length_of_stay", tl, T0 + 2 * DAY_US + HOUR)
    assert first.status == OPEN
    tl.add(fact("ADMISSION", T0 + 2 * DAY_US + 2 * HOUR, site="DE-CHA", ref="s2", attr="EMERGENCY"))
    assert only(catalogue, "hf_length_of_stay", tl, T0 + 4 * DAY_US).observation_id == first.observation_id
    gone = timeline(*hf_stay("s1", T0, T0 + 2 * DAY_US, disposition="TRANSFER"))
    assert only(catalogue, "hf_length_of_stay", gone, T0 + 3 * DAY_US).exclusion == "transferred_out"


def test_an_open_stay_wakes_its_patient_monthly_not_every_batch(catalogue: Catalogue) -> None:
    ind = catalogue.indicators["hf_length_of_stay"]
    tl = timeline(fact("ADMISSION", T0, ref="s1", attr="EMERGENCY"), fact("DIAGNOSIS", T0, ref="s1", concepts=HF))
    watermark = T0 + 45 * DAY_US
    assert next_deadline(only(catalogue, ind.id, tl, watermark), ind, watermark) == T0 + 60 * DAY_US


# ----------------------------------------------------------------- coded AML responses (ELN 2022)
ELN_REMISSION = {"CR": 1, "CRMRDNEG": 1, "CRH": 1, "CRI": 1, "MLFS": 0, "PR": 0, "SD": 0, "PD": 0, "RELAPSE": 0}


@pytest.mark.parametrize(("code", "remission"), sorted(ELN_REMISSION.items()))
def test_each_eln_2022_response_has_its_remission_verdict(catalogue: Catalogue, code: str, remission: int) -> None:
    concepts = CodeMap.load().map("ELN2022", code).concepts
    assert concepts, code
    response = fact("LAB_RESULT", T0 + 30 * DAY_US, concepts=concepts)
    obs = only(catalogue, "aml_complete_remission", timeline(aml_diagnosis(), induction(), response))
    assert (obs.status, obs.outcome) == (FINAL, remission)


# ----------------------------------------------------------------- PROM names in any spelling
@pytest.mark.parametrize(("instrument", "domain"), [
    ("EPIC-26", "urinary_incontinence"), ("EPIC26", "Urinary Incontinence"), ("epic 26", "urinary-incontinence"),
    ("Epic_26", " URINARY INCONTINENCE "),
])
def test_prom_instrument_and_domain_names_match_in_any_spelling(catalogue: Catalogue, instrument: str,
                                                                domain: str) -> None:
    prom = {"instrument": instrument, "domain": domain, "score": 70.0}
    raw = event("r", "PROM_RESPONSE", T0 + 365 * DAY_US, prom=prom, encounter_pseudonym=None)
    response = fact_from_event(raw, catalogue.relevant_concepts(), catalogue.prom_keys())
    assert response is not None
    obs = only(catalogue, "pca_epic26_incontinence_12m", timeline(prostatectomy(), response))
    assert (obs.status, obs.value) == (FINAL, 70.0)


# ----------------------------------------------------------------- the settings are validated
@pytest.mark.parametrize(("setting", "field"), [
    ("index_after_death = 'ignore'", "index_after_death"),
    ("without_follow_up = 'exclude'", "without_follow_up"),       # a score_drop setting
    ("prior_outcome_exclusion = 'In Care'", "prior_outcome_exclusion"),
    ("index = { event = 'ADMISSION', stay_concepts = ['acute_myocardial_infarction'], confirmed_by = ['nope'] }",
     "index.confirmed_by"),
    ("index = { event = 'ADMISSION', stay_concepts = ['acute_myocardial_infarction'], confirmed_by = ['aml'], "
     "confirmed_within_days = -1 }", "index.confirmed_within_days"),
])
def test_a_bad_setting_is_one_error_naming_it(tmp_path: Path, setting: str, field: str) -> None:
    shutil.copytree(DEFAULT_DIR, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "cardiovascular.toml"
    text = path.read_text()
    anchor = 'title = "Death from any cause within 30 days of an acute myocardial infarction admission"\n'
    if setting.startswith("index ="):
        text = text.replace('index = { event = "ADMISSION", stay_concepts = ["acute_myocardial_infarction"] }\n', "")
    path.write_text(text.replace(anchor, anchor + setting + "\n"))
    with pytest.raises(ConfigError) as err:
        load_catalogue(tmp_path)
    assert str(err.value).startswith(f"cardiovascular.toml: indicator ami_mortality_30d: {field}: ")


# ----------------------------------------------------------------- ward transfers, through the stages
def test_a_ward_transfer_inside_a_stay_neither_ends_nor_splits_it() -> None:
    driver = InMemoryDriver(Settings(mode=DEV, pseudonym_key="k" * 40, metrics_port=0, partitions=1),
                            stages=["normalise", "ascertain"])
    day, hour = 86_400_000_000, 3_600_000_000
    admit = clinical_event()["event_time"]

    def raw(event_id: str, event_type: str, t: int, **extra: object) -> dict[str, object]:
        return clinical_event(event_id=event_id, event_type=event_type, event_time=t, recorded_time=t + 60_000_000,
                              **{"code_system": None, "code": None, "admission_type": None, **extra})

    driver.pipe_events([raw("a", "ADMISSION", admit, admission_type="EMERGENCY"),
                        raw("d", "DIAGNOSIS", admit + hour, code_system="ICD-10", code="I50.9"),
                        raw("w1", "WARD_TRANSFER", admit + day), raw("w2", "WARD_TRANSFER", admit + 3 * day)])
    driver.run()
    normalised = [r["event_type"] for r in driver.records(topics.NORMALISED, schemas.NORMALISED_EVENT)]
    assert normalised.count("WARD_TRANSFER") == 2 and driver.dead_letters() == []
    los = [r for r in driver.records(topics.OBSERVATIONS, schemas.OUTCOME_OBSERVATION)
           if r["indicator"] == "hf_length_of_stay"]
    assert [(r["status"], r["value"]) for r in los] == [("OPEN", None)]  # still in hospital after two moves
    driver.pipe_events([raw("x", "DISCHARGE", admit + 6 * day, disposition="HOME")])
    driver.run()
    los = [r for r in driver.records(topics.OBSERVATIONS, schemas.OUTCOME_OBSERVATION)
           if r["indicator"] == "hf_length_of_stay"]
    assert [(r["status"], r["value"]) for r in los] == [("OPEN", None), ("FINAL", 6.0)]
    assert len({r["observation_id"] for r in los}) == 1
