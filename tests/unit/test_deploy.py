"""deploy/: the alerting rules pass promtool's checks and unit tests; the Grafana
dashboards and provisioning are well formed and consistent with each other.
(That every query names an exported metric is tested against a real worker in
tests/integration/test_prometheus.py.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from deploy_queries import DASHBOARDS, DEPLOY, RULES, dashboard_queries, metric_names, rule_queries

PROVISIONING = DEPLOY / "grafana" / "provisioning"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found: install the Debian package prometheus (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.parametrize("command", [["check", "rules", "rules.yml"], ["test", "rules", "rules.test.yml"],
                                     ["check", "config", "prometheus.yml"]], ids=["check", "test", "config"])
def test_promtool_accepts_the_rules(command: list[str]) -> None:
    result = subprocess.run([promtool(), *command], cwd=RULES.parent, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested() -> None:
    alerts = {where.split(": ", 1)[1] for where, _expr in rule_queries()}
    tested = set(re.findall(r"alertname: (\w+)", (RULES.parent / "rules.test.yml").read_text()))
    assert alerts == tested


def test_metric_names_are_read_out_of_promql() -> None:
    expr = ('histogram_quantile(0.95, sum by (stage, le) (rate(rwe_stage_batch_seconds_bucket{stage=~"a|b"}'
            '[$__rate_interval]))) > 1e3 and on (stage) -rwe_consumer_lag offset 5m '
            'or label_replace(up, "dst", "$1", "src", "(.*)")')
    assert metric_names(expr) == {"rwe_stage_batch_seconds_bucket", "rwe_consumer_lag", "up"}


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [q for p in panels for q in [p, *_panels(p.get("panels", []))]]


def test_dashboards_are_consistent_with_the_provisioning() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"]
    uids = {d["uid"] for d in datasources}
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "rwe.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    dashboards = [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]
    assert {d["uid"] for d in dashboards} == {"rwe-engine-health", "rwe-outcomes"}
    for dashboard in dashboards:
        panels = _panels(dashboard["panels"])
        assert len({p["id"] for p in panels}) == len(panels), dashboard["uid"]
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        for panel in panels:
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] in uids, panel["title"]
                used = set(re.findall(r"\$(\w+)", target["expr"] + panel["title"])) - {"__rate_interval"}
                assert used <= variables, (panel["title"], used - variables)
    assert len(dashboard_queries()) > 20
