"""Late data revises: hand-made timelines for each revision path, the revision horizon, the
as-of time and the wall clock of a quiet live feed (the tracker alone, no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streams.catalogue.definitions import Catalogue, load_catalogue
from streams.outcomes.ascertainment import Observation
from streams.outcomes.timeline import DAY_US
from streams.outcomes.tracker import (
    AFTER_AS_OF,
    APPLIED,
    BEYOND_HORIZON,
    LATE,
    OutcomeTracker,
    observation_record,
)

T0 = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1_000_000)
HOUR = 3_600_000_000


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def event(patient: str, event_id: str, kind: str, time: int, **fields: Any) -> dict[str, Any]:
    base = {"site_id": "NL-AMC", "patient_pseudonym": patient, "encounter_pseudonym": None, "concepts": [],
            "value": None, "unit": None, "admission_type": None, "disposition": None, "birth_year": 1950,
            "sex": "MALE", "prom": None, "event_id": event_id, "event_type": kind, "event_time": time}
    return {**base, **fields}


def hf_stay(patient: str, admitted: int, discharged: int | None, disposition: str = "HOME",
            stay: str | None = None, site: str = "NL-AMC") -> list[dict[str, Any]]:
    ref = stay or f"{patient}-stay"
    out = [event(patient, f"{ref}a", "ADMISSION", admitted, encounter_pseudonym=ref, admission_type="EMERGENCY",
                 site_id=site),
           event(patient, f"{ref}d", "DIAGNOSIS", admitted + HOUR, encounter_pseudonym=ref,
                 concepts=["heart_failure"], site_id=site)]
    if discharged is not None:
        out.append(event(patient, f"{ref}x", "DISCHARGE", discharged, encounter_pseudonym=ref,
                         disposition=disposition, site_id=site))
    return out


def push_time(tracker: OutcomeTracker, time: int) -> None:
    """Another patient's (irrelevant) event moves the partition's event time on."""
    tracker.add(event("clock", f"clock{time}", "DEATH", time))


def latest(observations: list[Observation], indicator: str) -> Observation:
    (found,) = [o for o in observations if o.indicator == indicator]
    return found


def feed(tracker: OutcomeTracker, events: list[dict[str, Any]]) -> list[Observation]:
    for e in events:
        tracker.add(e)
    return tracker.collect()


def test_a_late_death_turns_a_final_zero_into_a_one_with_the_next_revision(catalogue: Catalogue) -> None:
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    first = latest(feed(tracker, hf_stay("p", T0, T0 + 5 * DAY_US)), "hf_mortality_30d")
    assert (first.status, first.revision) == ("OPEN", 0)
    push_time(tracker, T0 + 40 * DAY_US)
    closed = latest(tracker.collect(), "hf_mortality_30d")
    assert (closed.status, closed.outcome, closed.revision) == ("FINAL", 0, 1)
    # The civil registry's death, dated day 20, arrives 20 days after the follow-up closed.
    assert tracker.add(event("p", "death", "DEATH", T0 + 20 * DAY_US)) == LATE
    revised = latest(tracker.collect(), "hf_mortality_30d")
    assert (revised.status, revised.outcome, revised.closed_time, revised.revision) == (
        "FINAL", 1, T0 + 20 * DAY_US, 2)
    assert observation_record(revised, catalogue, {})["revision"] == 2
    assert tracker.add(event("p", "death", "DEATH", T0 + 20 * DAY_US)) != APPLIED  # a resend changes nothing
    assert tracker.collect() == []


def test_a_late_readmission_revises_the_readmission_outcome(catalogue: Catalogue) -> None:
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    feed(tracker, hf_stay("p", T0, T0 + 5 * DAY_US))
    push_time(tracker, T0 + 60 * DAY_US)
    closed = latest(tracker.collect(), "hf_readmission_30d")
    assert (closed.status, closed.outcome) == ("FINAL", 0)
    late = [event("p", "r-a", "ADMISSION", T0 + 15 * DAY_US, encounter_pseudonym="r", admission_type="EMERGENCY"),
            event("p", "r-x", "DISCHARGE", T0 + 18 * DAY_US, encounter_pseudonym="r", disposition="HOME")]
    revised = latest([o for o in feed(tracker, late) if o.observation_id == closed.observation_id],
                     "hf_readmission_30d")
    assert (revised.status, revised.outcome, revised.revision) == ("FINAL", 1, closed.revision + 1)


def test_a_late_continuation_of_a_transfer_turns_an_exclusion_into_a_length_of_stay(catalogue: Catalogue) -> None:
    # Day 0-4 at NL-AMC, discharged by transfer; the admitting hospital's stay (day 4-10) is sent a month late.
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    feed(tracker, hf_stay("p", T0, T0 + 4 * DAY_US, disposition="TRANSFER"))
    push_time(tracker, T0 + 40 * DAY_US)
    excluded = latest(tracker.collect(), "hf_length_of_stay")
    assert (excluded.status, excluded.exclusion) == ("EXCLUDED", "transferred_out")
    late = hf_stay("p", T0 + 4 * DAY_US + HOUR, T0 + 10 * DAY_US, stay="second", site="FI-HUS")
    changed = [o for o in feed(tracker, late) if o.indicator == "hf_length_of_stay"]
    final = [o for o in changed if o.status == "FINAL"]
    assert len(final) == 1 and final[0].value == pytest.approx(10.0)
    # The hospitalisation is one observation from its admission on: the exclusion is revised into the stay's length.
    assert final[0].observation_id == excluded.observation_id and final[0].revision == excluded.revision + 1
    assert final[0].site == "FI-HUS"  # the discharging site
    assert not [o for o in changed if o.status == "EXCLUDED"]


def test_an_event_beyond_the_revision_horizon_is_refused_and_changes_nothing(catalogue: Catalogue) -> None:
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US, revision_horizon_us=100 * DAY_US)
    feed(tracker, hf_stay("p", T0, T0 + 5 * DAY_US))
    push_time(tracker, T0 + 130 * DAY_US)
    tracker.collect()
    assert tracker.revision_limit == T0 + 30 * DAY_US
    assert tracker.add(event("p", "death", "DEATH", T0 + 20 * DAY_US)) == BEYOND_HORIZON
    assert tracker.collect() == []
    # Within the horizon (day 31 is not older than the limit) it is applied.
    assert tracker.add(event("q", "q-death", "DEATH", T0 + 31 * DAY_US)) == LATE


def test_the_revision_horizon_keeps_what_a_late_event_can_still_change(catalogue: Catalogue) -> None:
    # Retention covers the revision horizon: a patient closed 300 days ago is still there to revise.
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    feed(tracker, hf_stay("p", T0, T0 + 5 * DAY_US))
    for day in range(30, 360, 10):
        push_time(tracker, T0 + day * DAY_US)
        tracker.collect()
    assert "p" in tracker.patients
    assert tracker.add(event("p", "death", "DEATH", T0 + 10 * DAY_US)) == LATE
    revised = latest(tracker.collect(), "hf_mortality_30d")
    assert (revised.status, revised.outcome) == ("FINAL", 1)


def test_as_of_leaves_later_events_out_and_closes_follow_ups_at_it(catalogue: Catalogue) -> None:
    as_of = T0 + 35 * DAY_US
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US, as_of=as_of)
    observations = feed(tracker, hf_stay("p", T0, T0 + 5 * DAY_US))
    assert latest(observations, "hf_mortality_30d").status == "OPEN"
    assert tracker.add(event("p", "death", "DEATH", T0 + 36 * DAY_US)) == AFTER_AS_OF  # after the report date
    closed = latest(tracker.collect(), "hf_mortality_30d")  # the feed has passed the as-of time
    assert (closed.status, closed.outcome, tracker.watermark) == ("FINAL", 0, as_of)
    push_time(tracker, T0 + 400 * DAY_US)
    assert tracker.watermark == as_of


def test_close_at_closes_what_was_open_at_a_report_date(catalogue: Catalogue) -> None:
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US, as_of=T0 + 35 * DAY_US)
    feed(tracker, hf_stay("p", T0, T0 + 5 * DAY_US))
    tracker.close_at(T0 + 35 * DAY_US)
    closed = latest(tracker.collect(), "hf_mortality_30d")
    assert (closed.status, closed.outcome) == ("FINAL", 0)


def test_a_quiet_live_feed_closes_follow_ups_by_the_wall_clock(catalogue: Catalogue) -> None:
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US, max_feed_delay_us=7 * DAY_US)
    feed(tracker, hf_stay("p", T0, T0 + 5 * DAY_US))
    tracker.arrived(T0 + 5 * DAY_US + HOUR)  # the discharge arrived an hour after it happened: live
    assert not tracker.follow_clock(T0 + 8 * DAY_US)  # 7 days behind the clock: behind the event watermark
    assert tracker.follow_clock(T0 + 38 * DAY_US)
    closed = latest(tracker.collect(), "hf_mortality_30d")
    assert (closed.status, closed.outcome) == ("FINAL", 0)
    assert tracker.watermark == T0 + 31 * DAY_US
    # A late death still revises it.
    assert tracker.add(event("p", "death", "DEATH", T0 + 29 * DAY_US)) == LATE
    assert latest(tracker.collect(), "hf_mortality_30d").outcome == 1


def test_a_replay_of_history_keeps_pure_event_time(catalogue: Catalogue) -> None:
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US, max_feed_delay_us=7 * DAY_US)
    feed(tracker, hf_stay("p", T0, T0 + 5 * DAY_US))
    tracker.arrived(T0 + 400 * DAY_US)  # read a year after it happened: a replay, not a live feed
    assert not tracker.follow_clock(T0 + 400 * DAY_US)
    assert tracker.collect() == [] and tracker.watermark == T0 + 3 * DAY_US


def test_a_restored_tracker_keeps_revisions_and_its_raised_watermark(catalogue: Catalogue) -> None:
    tracker = OutcomeTracker(catalogue, lateness_us=2 * DAY_US, max_feed_delay_us=7 * DAY_US)
    feed(tracker, hf_stay("p", T0, T0 + 5 * DAY_US))
    tracker.arrived(T0 + 5 * DAY_US)
    tracker.follow_clock(T0 + 38 * DAY_US)
    tracker.collect()
    from streams.wire import formats as wire

    schema = "rwe.internal.AscertainDelta"
    encoder, decoder = wire.Encoder(schema), wire.Decoder(schema)
    restored = OutcomeTracker(catalogue, lateness_us=2 * DAY_US, max_feed_delay_us=7 * DAY_US)
    for record in tracker.snapshot():
        restored.apply(decoder.decode(encoder.encode(record))[0])
    restored.restored()
    assert restored.watermark == tracker.watermark
    assert restored.flush_all() == []  # nothing goes back to OPEN, nothing is republished
    assert restored.add(event("p", "death", "DEATH", T0 + 29 * DAY_US)) == LATE
    revised = latest(restored.collect(), "hf_mortality_30d")
    assert (revised.outcome, revised.revision) == (1, 2)


def _ascertain_driver(clock_us: int, **settings: Any) -> tuple[Any, Any]:
    """The ascertain stage on the in-memory driver, and a function that sends it one
    NormalisedEvent (returns its bytes)."""
    from streams.runtime import topics
    from streams.runtime.memory import InMemoryDriver, ManualClock
    from streams.settings import DEV, Settings
    from streams.wire import formats as wire
    from streams.wire import schemas

    driver = InMemoryDriver(Settings(mode=DEV, pseudonym_key="k" * 40, metrics_port=0, partitions=1,
                                     min_cell_count=1, dead_letter_encryption="off", **settings),
                            stages=["ascertain"], clock=ManualClock(now_us=clock_us))
    encoder = wire.Encoder(schemas.NORMALISED_EVENT)
    common = {"region": "NL-NH", "country": "NL", "recorded_time": 0, "ingest_time": 0, "code_system": None,
              "code": None, "mapped": True, "code_map_version": "v"}

    def send(e: dict[str, Any]) -> bytes:
        value = encoder.encode({**common, **e, "recorded_time": e["event_time"]})
        driver.pipe(topics.NORMALISED, value, b"k", 0)
        driver.run()
        return value

    return driver, send


def _mortality(driver: Any) -> list[dict[str, Any]]:
    from streams.runtime import topics
    from streams.wire import schemas

    return [o for o in driver.records(topics.OBSERVATIONS, schemas.OUTCOME_OBSERVATION)
            if o["indicator"] == "hf_mortality_30d"]


def test_the_stage_closes_a_quiet_live_feeds_follow_ups_as_the_wall_clock_passes() -> None:
    driver, send = _ascertain_driver(T0 + 5 * DAY_US + HOUR)  # live: events arrive as they happen
    for e in hf_stay("p", T0, T0 + 5 * DAY_US):
        send(e)
    assert _mortality(driver)[-1]["status"] == "OPEN"
    driver.advance(20 * 86400.0)  # 20 quiet days
    assert _mortality(driver)[-1]["status"] == "OPEN"
    driver.advance(18 * 86400.0)  # 38 days after the admission: 7 d behind the clock is past the horizon
    assert (_mortality(driver)[-1]["status"], _mortality(driver)[-1]["outcome"]) == ("FINAL", 0)


def test_the_stage_keeps_pure_event_time_on_a_replay_of_history() -> None:
    driver, send = _ascertain_driver(T0 + 700 * DAY_US)  # the same events read two years later
    for e in hf_stay("p", T0, T0 + 5 * DAY_US):
        send(e)
    driver.advance(60 * 86400.0)
    assert [o["status"] for o in _mortality(driver)] == ["OPEN"]


def test_the_stage_dead_letters_an_event_beyond_the_revision_horizon_with_its_bytes() -> None:
    driver, send = _ascertain_driver(T0, revision_horizon=100 * 86400.0)

    for e in hf_stay("p", T0, T0 + 5 * DAY_US):
        send(e)
    send(event("other", "o1", "DEATH", T0 + 200 * DAY_US))
    late = send(event("p", "death", "DEATH", T0 + 20 * DAY_US))  # 180 days behind: beyond 100
    (letter,) = driver.dead_letters()
    assert letter["reason"] == "beyond_revision_horizon" and letter["stage"] == "ascertain"
    assert letter["original_value"] == late and "80.0 days older" in letter["message"]
    registry = driver.context.metrics.registry
    assert registry.get_sample_value("rwe_dead_letters_total", {
        "stage": "ascertain", "reason": "beyond_revision_horizon", "site": "NL-AMC"}) == 1
    assert _mortality(driver)[-1]["outcome"] == 0  # not applied
