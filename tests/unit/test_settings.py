from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import DEV, Settings, describe, parse_duration

KEY = "s" * 40


def test_reads_prefixed_environment_once() -> None:
    s = Settings.from_env({"RWE_BROKER": "kafka:9093", "RWE_PARTITIONS": "12", "RWE_ALLOWED_LATENESS": "3d",
                           "RWE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RWE_PSEUDONYM_KEY": KEY})
    assert (s.broker, s.partitions, s.allowed_lateness) == ("kafka:9093", 12, 3 * 86400)
    assert s.kafka_config()["security.protocol"] == "SASL_SSL"


def test_cli_overrides_win_over_environment() -> None:
    s = Settings.from_env({"RWE_BROKER": "a:1"}, broker="b:2", partitions=None)
    assert s.broker == "b:2" and s.partitions == 4


def test_secrets_are_masked() -> None:
    s = Settings.from_env({"RWE_PSEUDONYM_KEY": KEY, "RWE_KAFKA_SASL_PASSWORD": "hunter2"})
    shown = repr(s) + str(s)
    assert KEY not in shown and "hunter2" not in shown and "***" in shown


@pytest.mark.parametrize(("env", "names"), [
    ({"RWE_PARTITIONS": "many"}, "RWE_PARTITIONS"),
    ({"RWE_PARTITIONS": "0"}, "RWE_PARTITIONS"),
    ({"RWE_ALLOWED_LATENESS": "two days"}, "RWE_ALLOWED_LATENESS"),
    ({"RWE_MODE": "staging"}, "RWE_MODE"),
    ({"RWE_PSEUDONYM_KEY": "short"}, "RWE_PSEUDONYM_KEY"),
    ({"RWE_TOPIC_PREFIX": "bad prefix!"}, "RWE_TOPIC_PREFIX"),
    ({"RWE_SNAPSHOT_INTERVAL": "0"}, "RWE_SNAPSHOT_INTERVAL"),
])
def test_bad_values_name_the_setting_in_one_line(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert names in str(err.value) and "\n" not in str(err.value)


def test_the_snapshot_interval_reaches_the_aggregate_stage() -> None:
    from agents.aggregate import build
    from streams.runtime.worker import kafka_context

    settings = Settings.from_env({"RWE_MODE": DEV, "RWE_SNAPSHOT_INTERVAL": "0.5"})
    assert build(kafka_context(settings)).coalesce_seconds == 0.5
    assert Settings.from_env({}).snapshot_interval == 1.0


def test_production_refuses_to_run_without_a_key() -> None:
    with pytest.raises(ConfigError, match="RWE_PSEUDONYM_KEY"):
        Settings.from_env({}).resolve_key()


def test_dev_mode_generates_a_throwaway_key() -> None:
    key, generated = Settings.from_env({"RWE_MODE": DEV}).resolve_key()
    assert generated and len(key) >= 32
    assert Settings.from_env({"RWE_MODE": DEV}).resolve_key()[0] != key


def test_key_from_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    assert Settings.from_env({"RWE_PSEUDONYM_KEY_FILE": str(path)}).resolve_key() == (KEY.encode(), False)
    with pytest.raises(ConfigError, match="RWE_PSEUDONYM_KEY_FILE"):
        Settings.from_env({"RWE_PSEUDONYM_KEY_FILE": str(tmp_path / "absent")}).resolve_key()


def test_durations() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("15m") == 900
    assert parse_duration("42") == 42
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_every_setting_is_documented() -> None:
    rows = describe()
    assert all(env.startswith("RWE_") and doc for env, _default, doc in rows)
    assert len({env for env, _d, _doc in rows}) == len(rows)

