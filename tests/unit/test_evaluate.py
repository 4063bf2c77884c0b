"""rwe evaluate runs the stream's own stages in memory: what it counts on a hand-made feed."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.batch.evaluate import evaluate, write_csv
from streams.settings import DEV, Settings
from streams.simulator import SimulationConfig, records
from streams.wire import schemas
from streams.wire.formats import encode_container

SETTINGS = Settings(mode=DEV, pseudonym_key="k" * 40, metrics_port=0, partitions=2, min_cell_count=1)


def feed(tmp_path: Path, **config: object) -> Path:
    events = list(records(SimulationConfig(seed=33, patients_per_site=25, start=datetime(2022, 1, 1, tzinfo=UTC),
                                           **config)))  # type: ignore[arg-type]
    path = tmp_path / "events.avro"
    path.write_bytes(encode_container(schemas.CLINICAL_EVENT, events))
    return path


def test_evaluate_counts_rejections_duplicates_and_every_snapshot_key(tmp_path: Path) -> None:
    result = evaluate(feed(tmp_path, days=200, duplicate_rate=0.05, malformed_rate=0.02), SETTINGS)
    assert result.events == result.accepted + result.duplicates + sum(result.rejected.values())
    assert result.duplicates > 0 and result.rejected and result.late == 0
    keys = [(s["indicator"], s["scope"], s["scope_id"], s["window_days"] or 0) for s in result.snapshots]
    assert len(keys) == len(set(keys)) > 100
    rows = list(csv.DictReader(io.StringIO(write_csv(result.snapshots))))
    assert len(rows) == len(result.snapshots)
    stamps = {datetime.fromisoformat(r["as_of"]) for r in rows}  # ISO-8601, not epoch microseconds
    assert all(s.tzinfo is not None and s.year >= 2022 for s in stamps)


def test_the_cumulative_cell_counts_every_final_observation_however_late_its_horizon_closed(tmp_path: Path) -> None:
    # A two-year file in one evaluation: the stages see years of observations in one batch, in
    # pseudonym order. Each must be counted (once lost: 9 of 24 beyond the aggregate's retention).
    result = evaluate(feed(tmp_path, days=730), SETTINGS)
    (cell,) = [s for s in result.snapshots if s["indicator"] == "hf_mortality_30d" and s["scope"] == "NETWORK"
               and s["window_days"] is None]
    end = cell["as_of"] - 30 * 86_400_000_000
    mine = [o for o in result.observations.values() if o["indicator"] == "hf_mortality_30d"]
    final = [o for o in mine if o["status"] == "FINAL" and o["index_time"] <= end]
    following = [o for o in mine if o["index_time"] > end]
    assert len(final) > 20 and cell["denominator"] == len(final)
    assert cell["numerator"] == sum(o["outcome"] for o in final)
    assert cell["pending"] == sum(o["status"] == "OPEN" for o in mine) and cell["pending"] >= 1
    assert cell["provisional_numerator"] == sum(o["status"] == "FINAL" and o["outcome"] for o in following)


def test_as_of_reports_what_was_known_at_a_date(tmp_path: Path) -> None:
    path = feed(tmp_path, days=400)
    as_of = "2022-09-30T00:00Z"
    t = int(datetime(2022, 9, 30, tzinfo=UTC).timestamp() * 1_000_000)
    result = evaluate(path, SETTINGS.with_(as_of=as_of))
    assert result.snapshots and {s["as_of"] for s in result.snapshots} == {t}
    observations = list(result.observations.values())
    assert observations and all(o["index_time"] <= t for o in observations)
    assert all(o["closed_time"] is None or o["closed_time"] <= t for o in observations)
    # every follow-up that had ended by the date is closed: nothing OPEN past its horizon
    assert not [o for o in observations if o["status"] == "OPEN" and o["horizon_end"] <= t]
    # the same file without the as-of time goes further
    later = evaluate(path, SETTINGS)
    assert max(o["index_time"] for o in later.observations.values()) > t


def test_a_bad_as_of_time_is_one_line() -> None:
    from streams.errors import ConfigError

    with pytest.raises(ConfigError, match="RWE_AS_OF must be an ISO-8601 time"):
        SETTINGS.with_(as_of="last tuesday")
