"""Any arrival order and delay within the revision horizon gives the same final observations
and snapshots: the real ascertain and aggregate stages on the in-memory driver, fed the same
normalised events in event-time order and then late, out of order and in uneven batches."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.aggregate import AggregateStage
from streams.runtime import topics
from streams.runtime.memory import InMemoryDriver, MemoryMessage
from streams.settings import DEV, Settings
from streams.simulator import SimulationConfig, records
from streams.vocabulary.time import DAY_US
from streams.wire import schemas

SETTINGS = Settings(mode=DEV, pseudonym_key="k" * 40, metrics_port=0, partitions=2, min_cell_count=1,
                    max_feed_delay=0.0)
CONFIG = SimulationConfig(seed=5, patients_per_site=40, start=datetime(2024, 1, 1, tzinfo=UTC), days=420,
                          late_rate=0.0, duplicate_rate=0.0, malformed_rate=0.0)


def _normalised() -> list[tuple[int, MemoryMessage]]:
    """The feed's normalised events (event time, message), as the normaliser partitions them."""
    driver = InMemoryDriver(SETTINGS, stages=["normalise"])
    driver.pipe_events(sorted(records(CONFIG), key=lambda e: e["event_time"]))
    driver.run()
    out = []
    for message, event in zip(driver.messages(topics.NORMALISED),
                              driver.records(topics.NORMALISED, schemas.NORMALISED_EVENT), strict=True):
        out.append((event["event_time"], message))
    return out


NORMALISED = _normalised()


def run(arrivals: list[MemoryMessage], batch_sizes: list[int]) -> tuple[dict[str, Any], dict[str, Any], int, int]:
    """Final observations (latest record per id, but its revision), the aggregate state's
    snapshots (every field), how many records revised a closed observation, and how many
    events arrived behind the watermark."""
    driver = InMemoryDriver(SETTINGS, stages=["ascertain", "aggregate"])
    i, sizes = 0, iter(batch_sizes)
    while i < len(arrivals):
        n = next(sizes, 500)
        for m in arrivals[i:i + n]:
            driver.pipe(topics.NORMALISED, m.value(), m.key(), m.partition())
        driver.run()
        i += n
    driver.advance(2.0)
    latest: dict[str, dict[str, Any]] = {}
    revised = 0
    for o in driver.records(topics.OBSERVATIONS, schemas.OUTCOME_OBSERVATION):
        before = latest.get(o["observation_id"])
        revised += before is not None and before["status"] != "OPEN"  # a closed observation changed
        latest[o["observation_id"]] = o
    # A retraction stands for an absent observation (one published too early and withdrawn).
    final = {i: {k: v for k, v in o.items() if k != "revision"} for i, o in latest.items()
             if o["exclusion"] != "superseded"}
    stage = driver.stages["aggregate"]
    assert isinstance(stage, AggregateStage)
    snapshots: dict[str, Any] = {}
    for _p, state in stage.states:
        for indicator in state.indicators:
            snapshots.update(state.snapshots(indicator, SETTINGS.min_cell_count))
    assert not driver.dead_letters()
    late = driver.context.metrics.registry.get_sample_value("rwe_late_events_total", {"stage": "ascertain"})
    return final, snapshots, revised, int(late or 0)


IN_ORDER = run([m for _t, m in sorted(NORMALISED, key=lambda tm: tm[0])], [])


def late_arrival(seed: int, late_share: float) -> list[MemoryMessage]:
    """Each event at its event time, or (late_share of them) up to 60 days later."""
    rng = random.Random(seed)
    arrival = [(t + (rng.randrange(60 * DAY_US) if rng.random() < late_share else 0), rng.random(), m)
               for t, m in NORMALISED]
    return [m for _a, _tie, m in sorted(arrival, key=lambda a: a[:2])]


def test_late_events_revise_closed_observations_and_end_where_the_ordered_feed_ends() -> None:
    final, snapshots, revised, late = run(late_arrival(1, 0.2), [50, 30, 150])
    assert late > 100 and revised > 5  # FINAL observations published again with the late outcome
    assert (final, snapshots) == IN_ORDER[:2]
    assert len(final) > 500 and len(snapshots) > 500


@given(seed=st.integers(0, 2**32 - 1), late_share=st.sampled_from([0.05, 0.2, 0.5]),
       batch_sizes=st.lists(st.integers(20, 400), min_size=1, max_size=20))
@settings(max_examples=8, deadline=None)
def test_late_and_out_of_order_arrival_within_the_horizon_changes_no_final_result(
        seed: int, late_share: float, batch_sizes: list[int]) -> None:
    final, snapshots, _revised, late = run(late_arrival(seed, late_share), batch_sizes)
    assert late > 0
    assert final == IN_ORDER[0]
    assert snapshots == IN_ORDER[1]
