"""The rwe command line as a user meets it: help everywhere, one-line errors, real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.runtime.topics import create_topics
from streams.settings import Settings

SUBCOMMANDS = ["demo", "broker", "topics", "worker", "simulate", "publish", "dlq", "registry", "catalogue",
               "evaluate", "calibrate", "config", "alerts"]


def rwe(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RWE_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "streams.cli.main", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, check=False)


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_help_everywhere(command: str) -> None:
    result = rwe(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "usage: rwe" in result.stdout


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["worker", "--bogus"], {}, "unrecognized arguments: --bogus"),
    (["nonsense"], {}, "invalid choice"),
    (["worker"], {"RWE_PARTITIONS": "many"}, "RWE_PARTITIONS"),
    (["worker"], {}, "no pseudonymisation key"),
    (["worker", "--dev", "--broker", "127.0.0.1:1"], {}, "cannot reach the broker at 127.0.0.1:1"),
    (["catalogue", "show", "no_such_indicator"], {}, "unknown indicator"),
    (["evaluate", "--events", "/nonexistent.avro"], {}, "cannot read /nonexistent.avro"),
    (["simulate", "--shift", "garbage"], {"RWE_MODE": "dev"}, "--shift"),
    (["alerts", "--broker", "127.0.0.1:1"], {}, "cannot reach the broker at 127.0.0.1:1"),
    (["alerts", "--json"], {"RWE_MONITOR_ARL0": "often"}, "RWE_MONITOR_ARL0"),
    (["alerts"], {"RWE_MONITOR_OVERDISPERSION": "lots"}, "RWE_MONITOR_OVERDISPERSION must be none, phi"),
    (["evaluate", "--events", "x.avro", "--format", "avro"], {}, "--format avro needs --out"),
    (["calibrate"], {}, "one of the arguments --observations --topic is required"),
    (["calibrate", "--observations", "/nonexistent.avro"], {}, "cannot read /nonexistent.avro"),
    (["calibrate", "--observations", "x.avro", "--from-offset", "3"], {}, "--from-offset needs --topic"),
    (["calibrate", "--observations", "x.avro", "--from", "2025-02-01", "--to", "2025-01-01"], {},
     "--to 2025-01-01 must be after --from 2025-02-01"),
    (["calibrate", "--observations", "x.avro", "--from", "soon"], {}, "--from 'soon' is not an ISO date"),
    (["calibrate", "--observations", "x.avro", "--indicator", "nope"], {}, "unknown indicator 'nope'"),
    (["calibrate", "--topic", "outcomes.observations", "--broker", "127.0.0.1:1"], {},
     "cannot reach the broker at 127.0.0.1:1"),
    # Settings librdkafka would refuse deep inside a stage, named the way the user set them.
    (["worker", "--dev"], {"RWE_SESSION_TIMEOUT_MS": "999999999"}, "RWE_SESSION_TIMEOUT_MS must be at most"),
    (["worker", "--dev"], {"RWE_BATCH_SIZE": "2000000"}, "RWE_BATCH_SIZE must be at most 1,000,000"),
    (["worker", "--dev"], {"RWE_KAFKA_NO_SUCH_PROPERTY": "1"}, "RWE_KAFKA_NO_SUCH_PROPERTY='1': No such"),
    (["worker", "--dev"], {"RWE_KAFKA_SECURITY_PROTOCOL": "carrier-pigeon"},
     "RWE_KAFKA_SECURITY_PROTOCOL='carrier-pigeon': Invalid value"),
    (["worker", "--dev"], {"RWE_KAFKA_SASL_JAAS_CONFIG": "org.apache.kafka... required;"},
     "RWE_KAFKA_SASL_JAAS_CONFIG: sasl.jaas.config is a Java client setting"),
    (["worker", "--dev", "--broker", "127.0.0.1:1"], {"RWE_METRICS_HOST": "999.1.1.1"},
     "RWE_METRICS_HOST '999.1.1.1': cannot listen there"),
    (["alerts", "--dev"], {"RWE_KAFKA_FETCH_WAIT_MAX_MS": "-5"}, "RWE_KAFKA_FETCH_WAIT_MAX_MS='-5'"),
])
def test_user_errors_are_one_line(args: list[str], env: dict[str, str], needle: str) -> None:
    result = rwe(*args, env=env)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "WARNING" not in line]
    assert len(errors) == 1, result.stderr
    assert needle in errors[0]
    assert "Traceback" not in result.stderr


def test_catalogue_lists_every_area(tmp_path: Path) -> None:
    listing = rwe("catalogue", "list").stdout
    for area in ("cardiovascular", "prostate_cancer", "hematologic", "dementia"):
        assert area in listing
    shown = rwe("catalogue", "show", "hf_readmission_30d").stdout
    assert "in-hospital death" in shown and "catalogue_version" in shown
    bad = tmp_path / "bad.toml"
    bad.write_text('area = "x"\n[indicator.broken]\ntitle = "t"\nshape = "death"\nhorizon_days = -3\n'
                   'index = { event = "DEATH" }\n')
    result = rwe("catalogue", "validate", "--dir", str(tmp_path))
    assert result.returncode == 2
    assert "bad.toml: indicator broken: horizon_days" in result.stderr


@pytest.mark.integration
def test_simulate_publish_and_inspect_dead_letters(broker_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = broker_settings()
    create_topics(settings)
    env = {"RWE_BROKER": settings.broker, "RWE_TOPIC_PREFIX": settings.topic_prefix, "RWE_MODE": "dev",
           "RWE_SESSION_TIMEOUT_MS": "6000", "RWE_METRICS_PORT": "0"}
    feed = tmp_path / "feed.avro"
    made = rwe("simulate", "--out", str(feed), "--days", "20", "--patients-per-site", "10", env=env)
    assert made.returncode == 0, made.stderr
    published = rwe("publish", str(feed), "--batch", "100", env=env)
    assert published.returncode == 0, published.stderr
    assert "published" in published.stdout
    evaluated = rwe("evaluate", "--events", str(feed), env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    rejected = json.loads(evaluated.stdout)["rejected"]
    assert sum(rejected.values()) > 0
    worker = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "worker", "--stages", "normalise"],
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    expected = f"{sum(rejected.values())} dead letters on"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listing = rwe("dlq", "inspect", env=env)
            if expected in listing.stdout:
                break
            time.sleep(1)
        assert expected in listing.stdout, listing.stdout
        for reason, count in rejected.items():
            assert f"{count:8d}  {reason}" in listing.stdout
    finally:
        worker.terminate()
        _out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    as_csv = rwe("evaluate", "--events", str(feed), "--format", "csv", env=env)
    assert as_csv.returncode == 0, as_csv.stderr
    header, *rows = as_csv.stdout.splitlines()
    assert header.startswith("indicator,area,scope,scope_id,window_days")
    assert any(",NETWORK,network," in row for row in rows)


def test_the_embedded_broker_dies_with_its_parent() -> None:
    code = ("from streams.embedded.broker import EmbeddedBroker; b = EmbeddedBroker().start(); "
            "print(b._process.pid, flush=True); import time; time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    broker_pid = int(parent.stdout.readline())
    parent.kill()  # SIGKILL: no cleanup code runs in the parent
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 15
    while Path(f"/proc/{broker_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{broker_pid}").exists()


def test_broker_on_a_busy_port_is_one_line() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = rwe("broker", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip() == f"rwe broker: error: port {port} is in use: stop what holds it or choose " \
                                    "another with --port"


def test_version() -> None:
    result = rwe("--version")
    assert result.returncode == 0 and result.stdout.startswith("rwe 0.")


def test_a_topic_of_confluent_framed_records_without_a_registry_is_one_line(
        broker_settings: Callable[..., Settings]) -> None:
    from confluent_kafka import Producer

    from streams.runtime.topics import create_topics

    settings = broker_settings()
    create_topics(settings)
    producer = Producer(settings.kafka_config())
    producer.produce(settings.topic("outcomes.alerts"), value=b"\x00\x00\x00\x00\x07rest", key=b"a")
    assert producer.flush(10) == 0
    result = rwe("alerts", env={"RWE_BROKER": settings.broker, "RWE_TOPIC_PREFIX": settings.topic_prefix,
                                "RWE_MODE": "dev"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "rwe alerts: error: cannot read a record: Confluent-framed record but no schema registry configured "
        "(set RWE_SCHEMA_REGISTRY_URL)"]
