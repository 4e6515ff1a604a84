"""Static checks of ``deploy/``: alert rules, Prometheus, Alertmanager and the Grafana dashboard.

Prometheus does not run here, so the files are checked against the code:
every scaling trigger of the seed has an alert with its threshold and
duration, every ``mediation_*`` metric the rules and the dashboard use is
one the services export, and the files fit together (rule file, jobs,
receivers, datasource). Where ``promtool`` is installed it checks the rules
too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from dataflows.metrics import WorkerMetrics
from gateway.metrics import GatewayMetrics
from mediation.rules.triggers import TRIGGERS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
_METRIC = re.compile(r"\b(mediation_[a-z_]+)")
_DURATION = re.compile(r"^\d+[smh]$")


@cache
def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(ALERTS)["groups"] for rule in group["rules"]]


@cache
def _exported_samples() -> frozenset[str]:
    """Every sample name the gateway and the worker expose."""
    worker = WorkerMetrics(lambda: 0, positions=dict, highs=dict, batches_in_flight=lambda: 0)
    names = set()
    for registry in (GatewayMetrics.create().registry, worker.registry):
        for family in registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return frozenset(names)


def _anchors(markdown: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", markdown.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


def _balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in re.sub(r'"[^"]*"', "", expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack


def test_every_rule_is_well_formed_and_names_a_runbook_that_exists() -> None:
    anchors = _anchors(ROOT / "docs" / "operations.md")
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names))
    for rule in _rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
        assert rule["expr"].strip() and _balanced(rule["expr"]), rule["alert"]
        assert _DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("P0", "P1"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/operations.md" and anchor in anchors, rule["annotations"]["runbook"]


def test_each_scaling_trigger_has_an_alert_with_its_threshold_and_duration() -> None:
    scale = {"ms": 0.001, "%": 0.01, "s": 1}
    for trigger in TRIGGERS:
        rules = [r for r in _rules() if r["labels"].get("trigger") == trigger.name]
        assert rules, f"no alert for trigger {trigger.name}"
        threshold = f"{'>' if trigger.above else '<'} {trigger.threshold * scale[trigger.unit]:g}"
        minutes = trigger.sustained.removesuffix(" min")
        for rule in rules:
            assert threshold in " ".join(rule["expr"].split()), (rule["alert"], threshold)
            assert rule["for"] == f"{minutes}m", rule["alert"]


def test_rules_and_dashboard_use_only_metrics_the_services_export() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mediation.json").read_text())
    expressions = [rule["expr"] for rule in _rules()] + [
        target["expr"] for panel in dashboard["panels"] for target in panel["targets"]
    ]
    used = {name for expr in expressions for name in _METRIC.findall(expr)}
    assert used, "no mediation metrics referenced"
    assert used <= _exported_samples(), sorted(used - _exported_samples())


def test_the_files_fit_together() -> None:
    prometheus = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    for rule in _rules():
        for job in re.findall(r'job=~?"([^"]+)"', rule["expr"]):
            if job != "supabase":  # commented out until a project is configured
                assert set(job.split("|")) <= jobs, (rule["alert"], job)
    alertmanager = _yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
    receivers = {receiver["name"] for receiver in alertmanager["receivers"]}
    routes = alertmanager["route"]["routes"]
    assert {route["receiver"] for route in routes} | {
        alertmanager["route"]["receiver"]
    } <= receivers
    assert {m for route in routes for m in route["matchers"]} == {'severity="P0"', 'severity="P1"'}
    datasource = _yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mediation.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert {t["datasource"]["uid"] for t in panel["targets"]} == {uid}, panel["title"]


def test_promtool_accepts_the_rules_where_it_is_installed() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return  # the checks above stand in for it
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
