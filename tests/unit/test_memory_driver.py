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
MESSAGES, MANIFEST = generate(CONFIG)


def feed(driver: InMemoryDriver, messages: list[Any], settle: bool = True) -> InMemoryDriver:
    """Pipe ``messages`` into the raw topic and run; with ``settle``, let the coalesced snapshots out too."""
    for m in messages:
        driver.pipe(topics.RAW, m.value, m.key)
    driver.run()
    if settle:
        driver.advance(2.0)
    return driver


def indicators(driver: InMemoryDriver) -> dict[bytes, tuple[object, ...]]:
    """The latest snapshot of every key, but its as_of."""
    return {k: tuple(v for f, v in s.items() if f != "as_of")
            for k, s in driver.latest(topics.INDICATORS, schemas.INDICATOR_SNAPSHOT).items()}


def test_the_normaliser_publishes_every_valid_event_once_and_dead_letters_the_malformed() -> None:
    driver = feed(InMemoryDriver(SETTINGS, stages=["normalise"]), MESSAGES)
    assert len(driver.messages(topics.NORMALISED)) == MANIFEST.valid
    reasons: dict[str, int] = {}
    for letter in driver.dead_letters():
        reasons[letter["reason"]] = reasons.get(letter["reason"], 0) + 1
    assert reasons == MANIFEST.malformed


def test_a_restart_from_the_changelogs_halfway_publishes_the_same_indicators_as_one_run() -> None:
    straight = feed(InMemoryDriver(SETTINGS), MESSAGES)
    half = len(MESSAGES) // 2
    restarted = feed(InMemoryDriver(SETTINGS), MESSAGES[:half], settle=False)
    restarted.restart(from_committed=False)  # state from the changelogs; every input read again: absorbed
    feed(restarted, MESSAGES[half:])
    assert indicators(restarted) == indicators(straight)
    assert len(indicators(straight)) > 100


def test_a_restart_resumes_from_the_committed_positions_and_republishes_nothing_unchanged() -> None:
    driver = feed(InMemoryDriver(SETTINGS), MESSAGES)
    kept = (topics.NORMALISED, topics.OBSERVATIONS, topics.DLQ, topics.INDICATORS, topics.NETWORK)
    before = {t: len(driver.messages(t)) for t in kept}
    assert before[topics.INDICATORS] > 100
    driver.restart()
    feed(driver, [])
    assert {t: len(driver.messages(t)) for t in kept} == before


def test_an_indicator_changed_but_not_yet_published_at_the_crash_is_published_after_the_restart() -> None:
    settings = SETTINGS.with_(batch_size=50)  # observations over many rounds
    # The clock does not move: changes after an indicator's first computation wait to be coalesced.
    driver = feed(InMemoryDriver(settings), MESSAGES, settle=False)
    aggregate: Any = driver.stages["aggregate"]
    assert any(state.dirty for _p, state in aggregate.states)
    published = len(driver.messages(topics.INDICATORS))
    driver.restart()
    feed(driver, [])
    assert indicators(driver) == indicators(feed(InMemoryDriver(settings), MESSAGES))
    assert len(driver.messages(topics.INDICATORS)) > published
