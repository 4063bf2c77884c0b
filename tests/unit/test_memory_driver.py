"""The in-memory driver runs the real stages: what they publish, and what a restart from the changelogs keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streams.runtime import topics
from streams.runtime.memory import InMemoryDriver
from streams.settings import DEV, Settings
from streams.simulator import SimulationConfig, generate
from streams.wire import schemas

SETTINGS = Settings(mode=DEV, pseudonym_key="k" * 40, metrics_port=0, partitions=2, min_cell_count=1)
CONFIG = SimulationConfig(seed=11, patients_per_site=25, start=datetime(2025, 1, 1, tzinfo=UTC), days=300,
                          malformed_rate=0.02, duplicate_rate=0.03)


def test_the_normaliser_publishes_every_valid_event_once_and_dead_letters_the_malformed() -> None:
    messages, manifest = generate(CONFIG)
    driver = InMemoryDriver(SETTINGS, stages=["normalise"])
    for m in messages:
        driver.pipe(topics.RAW, m.value, m.key)
    driver.run()
    assert len(driver.messages(topics.NORMALISED)) == manifest.valid
    reasons: dict[str, int] = {}
    for letter in driver.dead_letters():
        reasons[letter["reason"]] = reasons.get(letter["reason"], 0) + 1
    assert reasons == manifest.malformed


def test_a_restart_from_the_changelogs_halfway_publishes_the_same_indicators_as_one_run() -> None:
    messages, _manifest = generate(CONFIG)
    straight = InMemoryDriver(SETTINGS)
    for m in messages:
        straight.pipe(topics.RAW, m.value, m.key)
    straight.run()
    straight.advance(2.0)

    restarted = InMemoryDriver(SETTINGS)
    half = len(messages) // 2
    for m in messages[:half]:
        restarted.pipe(topics.RAW, m.value, m.key)
    restarted.run()
    restarted.restart(from_committed=False)  # state from the changelogs; every input read again: absorbed
    for m in messages[half:]:
        restarted.pipe(topics.RAW, m.value, m.key)
    restarted.run()
    restarted.advance(2.0)

    def indicators(driver: InMemoryDriver) -> dict[bytes, tuple[object, ...]]:
        return {k: tuple(v for f, v in s.items() if f != "as_of")
                for k, s in driver.latest(topics.INDICATORS, schemas.INDICATOR_SNAPSHOT).items()}

    assert indicators(restarted) == indicators(straight)
    assert len(indicators(straight)) > 100


def test_a_restart_resumes_from_the_committed_positions_and_republishes_nothing_unchanged() -> None:
    messages, _manifest = generate(CONFIG)
    driver = InMemoryDriver(SETTINGS)
    for m in messages:
        driver.pipe(topics.RAW, m.value, m.key)
    driver.run()
    driver.advance(2.0)
    before = {t: len(driver.messages(t)) for t in (topics.NORMALISED, topics.OBSERVATIONS, topics.DLQ,
                                                    topics.INDICATORS, topics.NETWORK)}
    assert before[topics.INDICATORS] > 100
    driver.restart()
    driver.run()
    driver.advance(2.0)
    assert {t: len(driver.messages(t)) for t in before} == before


def test_an_indicator_changed_but_not_yet_published_at_the_crash_is_published_after_the_restart() -> None:
    messages, _manifest = generate(CONFIG)
    settings = SETTINGS.with_(batch_size=50)  # observations over many rounds
    driver = InMemoryDriver(settings)
    for m in messages:
        driver.pipe(topics.RAW, m.value, m.key)
    driver.run()  # the clock has not moved: changes after the first computation wait to be coalesced
    aggregate: Any = driver.stages["aggregate"]
    assert any(state.dirty for _p, state in aggregate.states)
    published = len(driver.messages(topics.INDICATORS))
    driver.restart()
    driver.run()
    driver.advance(2.0)
    straight = InMemoryDriver(settings)
    for m in messages:
        straight.pipe(topics.RAW, m.value, m.key)
    straight.run()
    straight.advance(2.0)

    def content(d: InMemoryDriver) -> dict[bytes, tuple[object, ...]]:
        return {k: tuple(v for f, v in s.items() if f != "as_of")
                for k, s in d.latest(topics.INDICATORS, schemas.INDICATOR_SNAPSHOT).items()}

    assert content(driver) == content(straight)
    assert len(driver.messages(topics.INDICATORS)) > published
