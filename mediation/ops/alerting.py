"""Checks of the alerting files in ``deploy/`` against the code (the gate and the tests use them).

- ``rule_problems``: every alert rule is well formed and names a runbook
  section that exists; every scaling trigger of the seed has an alert with
  its threshold and duration; every ``mediation_*`` metric the rules and
  the dashboard use is one the services export; the Prometheus, Grafana
  and Alertmanager files fit together.
- ``routing_problems``: P0 and P1 alerts reach a receiver that is not a
  placeholder (the on-call tool's webhook has been put in).

The files and the runbook (``docs/operations.md``) are package data
(``mediation.resources``), so the installed command checks the copies it
ships with.
"""

from __future__ import annotations

import json
import re
from importlib.resources.abc import Traversable
from typing import Any

import yaml

from mediation.resources import DEPLOY, OPERATIONS_DOC
from mediation.rules.triggers import TRIGGERS

__all__ = ["DEPLOY_DIR", "exported_samples", "routing_problems", "rule_problems"]

DEPLOY_DIR: Traversable = DEPLOY
_METRIC = re.compile(r"\b(mediation_[a-z_]+)")
_DURATION = re.compile(r"^\d+[smh]$")
_PLACEHOLDER = "example.invalid"
# Panels choose their Prometheus through the dashboard's variable, not a fixed uid.
_DATASOURCE = "${datasource}"


def _yaml(path: Traversable) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def exported_samples() -> frozenset[str]:
    """Every sample name the gateway and the worker expose."""
    from dataflows.metrics import WorkerMetrics
    from gateway.metrics import GatewayMetrics

    worker = WorkerMetrics(lambda: 0, positions=dict, highs=dict, owned=(1, 1))
    names: set[str] = set()
    for registry in (GatewayMetrics.create().registry, worker.registry):
        for family in registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return frozenset(names)


def _anchors(markdown: Traversable) -> set[str]:
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


def _rule_shape(rule: dict[str, Any], anchors: set[str]) -> list[str]:
    name = rule.get("alert", "?")
    problems = []
    if not set(rule) <= {"alert", "expr", "for", "labels", "annotations"}:
        problems.append(f"{name}: unknown keys {sorted(set(rule) - {'alert', 'expr', 'for'})}")
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]+", str(name)):
        problems.append(f"{name}: alert names are CamelCase")
    if not str(rule.get("expr", "")).strip() or not _balanced(str(rule.get("expr", ""))):
        problems.append(f"{name}: empty or unbalanced expr")
    if not _DURATION.match(str(rule.get("for", ""))):
        problems.append(f"{name}: 'for' must be a duration like 15m")
    if rule.get("labels", {}).get("severity") not in ("P0", "P1"):
        problems.append(f"{name}: severity must be P0 or P1")
    annotations = rule.get("annotations", {})
    page, _, anchor = str(annotations.get("runbook", "")).partition("#")
    if not annotations.get("summary"):
        problems.append(f"{name}: no summary")
    if page != "docs/operations.md" or anchor not in anchors:
        problems.append(f"{name}: runbook {annotations.get('runbook')!r} is not a section")
    return problems


def rule_problems(deploy: Traversable = DEPLOY_DIR) -> list[str]:
    """What is wrong with the alert rules, the dashboard and their wiring; empty when nothing."""
    try:
        rules = [
            r for g in _yaml(deploy / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]
        ]
        prometheus = _yaml(deploy / "prometheus" / "prometheus.yml")
        alertmanager = _yaml(deploy / "alertmanager" / "alertmanager.yml")
        dashboard = json.loads(
            (deploy / "grafana" / "dashboards" / "mediation.json").read_text(encoding="utf-8")
        )
        datasources = _yaml(deploy / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        return [f"cannot read the deploy files: {exc}"]
    problems: list[str] = []
    anchors = _anchors(OPERATIONS_DOC)
    names = [rule.get("alert") for rule in rules]
    if len(names) != len(set(names)):
        problems.append("alert names repeat")
    for rule in rules:
        problems += _rule_shape(rule, anchors)
    scale = {"ms": 0.001, "%": 0.01, "s": 1}
    for trigger in TRIGGERS:
        covering = [r for r in rules if r.get("labels", {}).get("trigger") == trigger.name]
        if not covering:
            problems.append(f"no alert for the trigger {trigger.name}")
        threshold = f"{'>' if trigger.above else '<'} {trigger.threshold * scale[trigger.unit]:g}"
        duration = f"{trigger.sustained.removesuffix(' min')}m"
        for rule in covering:
            if threshold not in " ".join(str(rule["expr"]).split()):
                problems.append(f"{rule['alert']}: expr lacks the threshold '{threshold}'")
            if rule.get("for") != duration:
                problems.append(f"{rule['alert']}: for must be {duration}")
    expressions = (
        [str(rule.get("expr", "")) for rule in rules]
        + [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
        + [a["expr"] for a in dashboard.get("annotations", {}).get("list", []) if "expr" in a]
    )
    unknown = {n for e in expressions for n in _METRIC.findall(e)} - exported_samples()
    if unknown:
        problems.append(f"metrics no service exports: {', '.join(sorted(unknown))}")
    if prometheus.get("rule_files") != ["/etc/prometheus/alerts.yml"]:
        problems.append("prometheus.yml does not load /etc/prometheus/alerts.yml")
    jobs = {job["job_name"] for job in prometheus.get("scrape_configs", [])}
    for rule in rules:
        for job in re.findall(r'job=~?"([^"]+)"', str(rule.get("expr", ""))):
            if job != "supabase" and not set(job.split("|")) <= jobs:
                problems.append(f"{rule['alert']}: job {job} is not scraped")
    receivers = {receiver["name"] for receiver in alertmanager.get("receivers", [])}
    route = alertmanager.get("route", {})
    routes = route.get("routes", [])
    if not {r["receiver"] for r in routes} | {route.get("receiver")} <= receivers:
        problems.append("alertmanager routes name receivers that do not exist")
    if datasources["datasources"][0].get("type") != "prometheus":
        problems.append("the provisioned datasource is not Prometheus")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    chosen = variables.get("datasource", {})
    if (chosen.get("type"), chosen.get("query")) != ("datasource", "prometheus"):
        problems.append("the dashboard has no Prometheus ${datasource} variable")
    ids = [panel["id"] for panel in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        problems.append("dashboard panel ids repeat")
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            continue
        uids = {t["datasource"]["uid"] for t in panel.get("targets", [])}
        if uids != {_DATASOURCE} or panel["datasource"]["uid"] != _DATASOURCE:
            problems.append(f"panel {panel['title']!r}: no targets or not ${{datasource}}")
    return problems


def routing_problems(alertmanager_file: Traversable) -> list[str]:
    """Whether P0 and P1 alerts reach a real receiver; empty when they do."""
    try:
        config = _yaml(alertmanager_file)
        receivers = {r["name"]: r for r in config["receivers"]}
        routes = config["route"].get("routes", [])
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        return [f"cannot read {alertmanager_file}: {exc}"]
    problems = []
    for severity in ("P0", "P1"):
        route = next((r for r in routes if f'severity="{severity}"' in r.get("matchers", [])), None)
        if route is None:
            problems.append(f"no route for {severity}")
            continue
        receiver = receivers.get(route["receiver"], {})
        urls = [
            str(c.get("url", c.get("routing_key", c.get("service_key", ""))))
            for kind, configs in receiver.items()
            if kind.endswith("_configs")
            for c in configs
        ]
        if not urls:
            problems.append(f"{severity} receiver {route['receiver']} sends nowhere")
        elif any(_PLACEHOLDER in url for url in urls):
            problems.append(
                f"{severity} receiver {route['receiver']} is a placeholder ({_PLACEHOLDER}): "
                "put the on-call tool's webhook in"
            )
    return problems
