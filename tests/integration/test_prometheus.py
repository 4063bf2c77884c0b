"""A real Prometheus scrapes a worker that has processed a simulated feed on the real
broker; the values it stores are what the engine did. The dashboards and alerting
rules in deploy/ name only metrics that worker exports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from deploy_queries import dashboard_queries, metric_names, rule_queries
from helpers import read_topic, wait_for
from prometheus_client.parser import text_string_to_metric_families

from streams.embedded.broker import free_port
from streams.runtime import topics
from streams.runtime.runner import producer_config
from streams.runtime.stage import StageContext
from streams.runtime.topics import create_topics
from streams.runtime.topology import STAGES
from streams.runtime.worker import Worker, kafka_context
from streams.settings import DEV, Settings
from streams.simulator import Manifest, SimulationConfig, generate, publish
from streams.wire import formats as wire
from streams.wire import schemas

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"


@dataclass
class FedWorker:
    engine: StageContext
    worker: Worker
    settings: Settings
    manifest: Manifest
    metrics_url: str


def _events_in(engine: StageContext, stage: str) -> float:
    return engine.metrics.registry.get_sample_value("rwe_stage_events_in_total", {"stage": stage}) or 0.0


def _events_out(engine: StageContext, stage: str) -> float:
    return engine.metrics.registry.get_sample_value("rwe_stage_events_out_total", {"stage": stage}) or 0.0


@pytest.fixture(scope="module")
def fed_worker(broker: str) -> Iterator[FedWorker]:
    """All stages after a simulated feed (with duplicates, late and malformed events),
    settled: every stage has read what the one before it published."""
    settings = Settings(mode=DEV, pseudonym_key="k" * 40, broker=broker, topic_prefix="prom.", partitions=2,
                        session_timeout_ms=6000, group_id="g-prom", metrics_port=0, consumer_lag_interval=0.5)
    create_topics(settings)
    config = SimulationConfig(seed=5, patients_per_site=80, start=datetime(2025, 1, 1, tzinfo=UTC), days=150,
                              duplicate_rate=0.03, late_rate=0.03, malformed_rate=0.02)
    messages, manifest = generate(config)
    engine = kafka_context(settings)
    worker = Worker(engine, STAGES)
    port = free_port()
    server = engine.metrics.serve(port)
    worker.start()
    try:
        assert worker.wait_assigned(60)
        publish(messages, Producer(producer_config(settings)), settings.topic(topics.RAW))
        sent = manifest.valid + manifest.duplicates + sum(manifest.malformed.values())
        wait_for(lambda: _events_in(engine, "normalise") >= sent, timeout=120, what="normalise")
        for before, stage in (("normalise", "ascertain"), ("ascertain", "aggregate")):
            wait_for(lambda b=before, s=stage: _events_in(engine, s) >= _events_out(engine, b), timeout=120,
                     what=stage)
        _wait_until_published(engine)
        yield FedWorker(engine, worker, settings, manifest, f"http://127.0.0.1:{port}/metrics")
    finally:
        worker.stop()
        server.shutdown()
        server.server_close()
    assert not worker.errors


def _wait_until_published(engine: StageContext) -> None:
    """Snapshots are published at most once a second per indicator: wait for a quiet 3 s."""
    def published() -> float:
        return sum(s.value for m in engine.metrics.registry.collect() for s in m.samples
                   if s.name == "rwe_aggregate_snapshots_published_total")

    last, since = -1.0, time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        now = published()
        if now != last:
            last, since = now, time.monotonic()
        elif now > 0 and time.monotonic() - since > 3:
            return
        time.sleep(0.2)
    raise AssertionError("snapshots kept changing for 60 s")


def _prometheus_binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if found is None:
        message = ("prometheus not found: install the Debian package (apt-get install prometheus); "
                   ".ci/run installs it")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


class Prometheus:
    """A real Prometheus server scraping ``target`` every second, with the engine's rules."""

    def __init__(self, target: str, workdir: Path) -> None:
        binary = _prometheus_binary()  # before anything is opened: a skip here must leak no file
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "rwe", "static_configs": [{"targets": [target]}]}],
        }))
        self.log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Instant vector result: labels (without __name__) -> value."""
        return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
                for r in self.get("/api/v1/query", query=promql)["result"]}

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}")
        try:
            return bool(self.query('up{job="rwe"} == 1'))
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def prometheus(fed_worker: FedWorker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    target = urllib.parse.urlparse(fed_worker.metrics_url).netloc
    server = Prometheus(target, tmp_path_factory.mktemp("prometheus"))
    try:
        wait_for(server.ready, timeout=60, what="prometheus to scrape the worker")
        yield server
    finally:
        server.stop()
    assert server.process.poll() is not None


def _latest_published(settings: Settings) -> dict[str, dict[str, Any]]:
    decoder = wire.Decoder(schemas.INDICATOR_SNAPSHOT)
    latest: dict[str, dict[str, Any]] = {}
    for key, value, _p in read_topic(settings, settings.topic(topics.INDICATORS)):
        assert key is not None
        latest[key.decode()] = decoder.decode(value)[0]
    return latest


def test_prometheus_stores_what_the_engine_did(fed_worker: FedWorker, prometheus: Prometheus) -> None:
    manifest = fed_worker.manifest
    sent = manifest.valid + manifest.duplicates + sum(manifest.malformed.values())
    assert prometheus.query('rwe_stage_events_in_total{stage="normalise"}') == {(("instance", _instance(
        fed_worker)), ("job", "rwe"), ("stage", "normalise")): sent}
    by_reason = prometheus.query('sum by (reason) (rwe_dead_letters_total{stage="normalise"})')
    assert {dict(k)["reason"]: v for k, v in by_reason.items()} == manifest.malformed
    assert prometheus.query('sum(rwe_stage_events_out_total{stage="normalise"})') == {(): manifest.valid}

    # Indicator gauges: exactly the latest published snapshots that are site or network
    # scope and not suppressed, with the published values.
    published = _latest_published(fed_worker.settings)
    sites = set(fed_worker.engine.sites)
    expected: dict[str, dict[tuple[str, str, str], float]] = {"value": {}, "denominator": {},
                                                               "observed_expected_ratio": {}}
    for s in published.values():
        if s["suppressed"] or not (s["scope"] == "NETWORK" or (s["scope"] == "SITE" and s["scope_id"] in sites)):
            continue
        cell = (s["indicator"], "network" if s["scope"] == "NETWORK" else s["scope_id"],
                "all" if s["window_days"] is None else f"{s['window_days']}d")
        for name, value in (("value", s["proportion"] if s["kind"] == "PROPORTION" else s["mean"]),
                            ("denominator", s["denominator"]), ("observed_expected_ratio", s["observed_expected"])):
            if value is not None:
                expected[name][cell] = value
    assert any(site != "network" for _i, site, _w in expected["value"]), "no unsuppressed site cell: feed too small?"
    assert expected["observed_expected_ratio"], "no cell with a risk model's O/E"
    for name, cells in expected.items():
        stored = {(d["indicator"], d["site"], d["window"]): v
                  for d, v in ((dict(k), v) for k, v in prometheus.query(f"rwe_indicator_{name}").items())}
        assert stored.keys() == cells.keys(), name
        for cell, value in cells.items():
            assert stored[cell] == pytest.approx(value, rel=1e-12), (name, cell)
    suppressed = [s for s in published.values() if s["suppressed"]]
    assert suppressed, "the feed should leave some cells small"
    intervals = prometheus.query("rwe_indicator_lower <= rwe_indicator_value <= bool rwe_indicator_upper")
    assert intervals and all(v == 1 for v in intervals.values())

    # Engine health: every stage's batch latency histogram, state size, rebalances; late events counted.
    def per_stage(promql: str) -> dict[str, float]:
        return {dict(k)["stage"]: v for k, v in prometheus.query(promql).items()}

    assert per_stage("sum by (stage) (rwe_stage_batch_seconds_count)").keys() == set(STAGES)
    assert all(v > 0 for v in per_stage("sum by (stage) (rwe_stage_batch_seconds_count)").values())
    assert per_stage('sum by (stage) (rwe_rebalances_total{kind="assign"})') == dict.fromkeys(STAGES, 1)
    assert all(v > 0 for v in per_stage("rwe_state_entries").values())
    assert set(per_stage("rwe_state_entries")) == set(STAGES)
    assert "ascertain" in per_stage("rwe_late_events_total")

    # Lag per input partition, reported by every stage once its input is drained.
    lag = prometheus.query("rwe_consumer_lag")
    assert {dict(k)["stage"] for k in lag} == set(STAGES)
    assert all(v >= 0 for v in lag.values())

    # The alerting rules load into a real Prometheus and evaluate without error.
    def rules_evaluated() -> bool:
        groups = prometheus.get("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return bool(rules) and all(r.get("lastEvaluation", "").startswith("2") and r["health"] == "ok"
                                   for r in rules)

    wait_for(rules_evaluated, timeout=30, what="the alerting rules to evaluate healthy")


def _instance(fed_worker: FedWorker) -> str:
    return urllib.parse.urlparse(fed_worker.metrics_url).netloc


def _exported_names(fed_worker: FedWorker) -> set[str]:
    """Sample names of a real scrape of the fed worker, plus the monitor families the
    collector declares (the monitor stage is not in this worker's process yet)."""
    with urllib.request.urlopen(fed_worker.metrics_url, timeout=5) as response:
        text = response.read().decode()
    names = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    collector = fed_worker.worker.collector
    assert collector is not None
    return names | {f.name for f in collector.describe()}


def test_every_dashboard_and_rule_query_names_an_exported_metric(fed_worker: FedWorker) -> None:
    exported = _exported_names(fed_worker)
    queries = dashboard_queries() + rule_queries()
    assert len(queries) > 20
    unknown = {(where, name) for where, expr in queries for name in metric_names(expr) if name not in exported}
    assert unknown == set()
