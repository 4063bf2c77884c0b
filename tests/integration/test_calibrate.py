"""``rwe calibrate`` against the real broker: a range of the observations topic in, risk tables out."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from streams.catalogue.definitions import load_catalogue
from streams.runtime import topics
from streams.runtime.partitioning import partition_for
from streams.runtime.runner import producer_config
from streams.runtime.topics import create_topics
from streams.settings import Settings
from streams.wire import formats as wire
from streams.wire import schemas

pytestmark = pytest.mark.integration

CATALOGUE = load_catalogue()
IND = "af_stroke_1y"  # covariates age, male, prior_admissions_12m
T = 1_735_689_600_000_000  # 2025-01-01T00:00Z
DAY_US = 86_400_000_000


def observations(n: int, age_coefficient: float, seed: int, prefix: str, day0: int = 0) -> list[dict[str, Any]]:
    """FINAL observations of IND whose outcome follows a known logistic model in age and sex,
    each preceded by its OPEN record (the latest record of an observation is what counts)."""
    rng = np.random.default_rng(seed)
    ind = CATALOGUE.indicators[IND]
    out = []
    for i in range(n):
        age = float(rng.normal(72, 10))
        male = float(rng.integers(0, 2))
        eta = -1.0 + age_coefficient * (age - 72) + 0.6 * (male - 0.5)
        outcome = int(rng.random() < 1 / (1 + np.exp(-eta)))
        index_time = T + (day0 + i % 300) * DAY_US
        base = {"observation_id": f"{IND}:{prefix}{i:06d}", "indicator": IND, "area": ind.area,
                "catalogue_version": CATALOGUE.version, "site_id": "NL-AMC", "region": "NL-NH", "country": "NL",
                "index_time": index_time, "horizon_end": index_time + ind.horizon_us, "value": None,
                "expected": None, "exclusion": None, "covariates": {"age": age, "male": male}}
        out.append({**base, "status": "OPEN", "closed_time": None, "outcome": None})
        out.append({**base, "status": "FINAL", "closed_time": index_time + ind.horizon_us, "outcome": outcome})
    return out


def publish(settings: Settings, records: list[dict[str, Any]]) -> None:
    encoder = wire.Encoder(schemas.OUTCOME_OBSERVATION)
    producer = Producer(producer_config(settings))
    partition = partition_for(IND.encode(), settings.partitions)
    for r in records:
        producer.produce(settings.topic(topics.OBSERVATIONS), value=encoder.encode(r),
                         key=f"{IND}|NL-AMC".encode(), partition=partition)
    assert producer.flush(30) == 0


def calibrate(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RWE_")}
    env.update(RWE_BROKER=settings.broker, RWE_TOPIC_PREFIX=settings.topic_prefix)
    return subprocess.run([sys.executable, "-m", "streams.cli.main", "calibrate", "--topic", topics.OBSERVATIONS,
                           "--indicator", IND, *args], capture_output=True, text=True, env=env, timeout=180,
                          check=False)


def fitted(path: Path) -> dict[str, Any]:
    risk: dict[str, Any] = tomllib.loads(path.read_text())["indicator"][IND]["risk"]
    return risk


def test_calibrate_fits_a_topic_range(broker_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = broker_settings()
    create_topics(settings)
    decoys = observations(1500, age_coefficient=-0.06, seed=1, prefix="d")  # offsets 0 .. 2999
    publish(settings, decoys)
    publish(settings, observations(3000, age_coefficient=0.08, seed=2, prefix="t", day0=400))

    later = calibrate(settings, "--from-offset", str(len(decoys)), "--output", str(tmp_path / "later.toml"))
    assert later.returncode == 0, later.stderr
    model = fitted(tmp_path / "later.toml")
    assert model["coefficients"]["age"] == pytest.approx(0.08, abs=0.02)
    assert model["coefficients"]["male"] == pytest.approx(0.6, abs=0.25)
    assert model["reference"]["age"] == pytest.approx(72, abs=1)
    assert "prior_admissions_12m" not in model["coefficients"]  # never observed: no coefficient
    row = next(line for line in later.stdout.splitlines() if line.startswith(IND) and "fitted" in line)
    n, events, oe = row.split()[2:5]
    assert int(n) == 3000 and 0 < int(events) < 3000 and float(oe) == 1.0

    earlier = calibrate(settings, "--to-offset", str(len(decoys)), "--output", str(tmp_path / "earlier.toml"))
    assert earlier.returncode == 0, earlier.stderr
    assert fitted(tmp_path / "earlier.toml")["coefficients"]["age"] == pytest.approx(-0.06, abs=0.02)

    # The same split by index time instead of offsets; the table goes to standard output.
    by_time = calibrate(settings, "--from", "2026-02-05")  # the second set starts 400 days after T
    assert by_time.returncode == 0, by_time.stderr
    table = tomllib.loads(by_time.stdout[by_time.stdout.index("# Fitted"):])["indicator"][IND]["risk"]
    assert table == fitted(tmp_path / "later.toml")
    assert "3000 FINAL observations" in by_time.stdout


def test_calibrate_on_a_missing_topic_is_one_line(broker_settings: Callable[..., Settings]) -> None:
    settings = broker_settings()
    result = calibrate(settings)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"rwe calibrate: error: no topic {settings.topic(topics.OBSERVATIONS)} on {settings.broker}"]
