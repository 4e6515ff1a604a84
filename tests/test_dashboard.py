"""The Grafana dashboard: datasource variable, filters, rate windows, legends, business row.

Static checks of ``deploy/grafana/dashboards/mediation.json`` against the
code's metric registries (``mediation.ops.alerting.exported_samples``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from mediation.ops.alerting import DEPLOY_DIR, exported_samples, rule_problems

DASHBOARD = DEPLOY_DIR / "grafana" / "dashboards" / "mediation.json"
VARIABLE = "${datasource}"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    targets = [t["expr"] for panel in _panels(dashboard) for t in panel["targets"]]
    annotations = [a["expr"] for a in dashboard["annotations"]["list"]]
    queries = [v["query"]["query"] for v in _variables(dashboard).values() if v["type"] == "query"]
    return targets + annotations + queries


def test_the_datasource_is_a_variable_every_panel_and_annotation_uses(
    dashboard: dict[str, Any],
) -> None:
    chosen = _variables(dashboard)["datasource"]
    assert (chosen["type"], chosen["query"]) == ("datasource", "prometheus")
    for panel in _panels(dashboard):
        assert panel["datasource"]["uid"] == VARIABLE, panel["title"]
        assert {t["datasource"]["uid"] for t in panel["targets"]} == {VARIABLE}, panel["title"]
    for annotation in dashboard["annotations"]["list"]:
        assert annotation["datasource"]["uid"] == VARIABLE, annotation["name"]
    for variable in _variables(dashboard).values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == VARIABLE
    # No fixed uid is left anywhere (it only works with one provisioned datasource).
    assert '"uid": "prometheus"' not in DASHBOARD.read_text(encoding="utf-8")


def test_app_and_placement_variables_list_the_new_metrics_labels(
    dashboard: dict[str, Any],
) -> None:
    variables = _variables(dashboard)
    for name in ("app", "placement"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["multi"] is True and variable["includeAll"] is True
        assert variable["query"]["query"].startswith("label_values(mediation_")
        assert variable["query"]["query"].endswith(f", {name})")
    business = " ".join(t["expr"] for panel in _panels(dashboard) for t in panel["targets"])
    assert 'app=~"$app"' in business and 'placement=~"$placement"' in business


def test_every_rate_and_increase_uses_the_rate_interval(dashboard: dict[str, Any]) -> None:
    calls = re.compile(r"\b(rate|irate|increase|changes)\(([^()]*(?:\([^()]*\))*[^()]*)\)")
    windows = []
    for expr in _expressions(dashboard):
        for function, argument in calls.findall(expr):
            windows += [(function, w) for w in re.findall(r"\[([^\]]+)\]", argument)]
    assert windows, "no rate() found: the check would pass vacuously"
    assert {window for _, window in windows} == {"$__rate_interval"}, windows


def test_every_timeseries_panel_has_a_legend(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        assert panel["type"] == "timeseries"
        assert panel["options"]["legend"]["showLegend"] is True, panel["title"]
        for target in panel["targets"]:
            assert target.get("legendFormat"), (panel["title"], target["refId"])


def test_the_business_row_shows_fill_revenue_ecpm_and_no_fill(dashboard: dict[str, Any]) -> None:
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[0]["title"].startswith("Business")
    start = dashboard["panels"].index(rows[0])
    end = dashboard["panels"].index(rows[1])
    titles = {p["title"]: p for p in dashboard["panels"][start + 1 : end]}

    def expr(prefix: str) -> str:
        (panel,) = [p for title, p in titles.items() if title.startswith(prefix)]
        return " ".join(t["expr"] for t in panel["targets"])

    assert 'result="fill"' in expr("Fill rate by app")
    assert 'result="no_fill"' in expr("No-fill rate by placement")
    revenue, ecpm = expr("Revenue per minute"), expr("eCPM")
    assert "mediation_worker_revenue_micros_total" in revenue and "/ 1e6" in revenue
    assert "mediation_worker_impressions_total" in ecpm and ecpm.startswith("1000 *")
    # Currencies are never added together: every sum over revenue keeps the currency.
    for sums in re.findall(r"sum by \(([^)]*)\) \(rate\(mediation_worker_revenue", revenue + ecpm):
        assert "currency" in sums


def test_publish_and_rollback_are_annotated_from_the_gateway_catalog_gauges(
    dashboard: dict[str, Any],
) -> None:
    annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
    assert "mediation_config_version" in annotations["Config publish"]["expr"]
    assert "mediation_config_rollout_percent" in annotations["Config rollback"]["expr"]
    assert all(a["enable"] for a in annotations.values())


def test_every_metric_the_dashboard_queries_is_exported(dashboard: dict[str, Any]) -> None:
    used = {name for e in _expressions(dashboard) for name in re.findall(r"\bmediation_[a-z_]+", e)}
    assert {
        "mediation_gateway_sync_answers_total",
        "mediation_worker_revenue_micros_total",
        "mediation_worker_impressions_total",
        "mediation_worker_archives_by_outcome_total",
        "mediation_config_version",
        "mediation_config_rollout_percent",
    } <= used
    assert used - exported_samples() == set()


def test_the_deploy_check_catches_a_fixed_datasource_uid(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY_DIR, copy)
    board = copy / "grafana" / "dashboards" / "mediation.json"
    changed = json.loads(board.read_text())
    panel = _panels(changed)[0]
    panel["targets"][0]["datasource"]["uid"] = "prometheus"
    board.write_text(json.dumps(changed))
    assert any(panel["title"] in problem for problem in rule_problems(copy))
    assert rule_problems() == []
