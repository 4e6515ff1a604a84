"""Static checks of ``deploy/``: alert rules, Prometheus, Alertmanager and the Grafana dashboard.

Prometheus does not run here, so ``mediation.ops.alerting`` checks the files
against the code (the gate runs the same checks); these tests also show
that the checks catch what they should. promtool's checks and the rules'
unit tests are in ``tests/test_promtool.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mediation.ops.alerting import DEPLOY_DIR, routing_problems, rule_problems


def test_the_shipped_rules_dashboard_and_wiring_have_no_problem() -> None:
    assert rule_problems() == []


def _deploy_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY_DIR, copy)
    return copy


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("> 0.3", "> 0.5"), "SyncRequestP95LatencyHigh: expr lacks the threshold '> 0.3'"),
        (
            (
                "for: 15m\n        labels:\n          severity: P1\n          trigger: db_cpu",
                "for: 5m\n        labels:\n          severity: P1\n          trigger: db_cpu",
            ),
            "DatabaseCpuHigh: for must be 15m",
        ),
        (
            ("mediation_worker_event_time_lag_seconds", "mediation_worker_lag_typo"),
            "metrics no service exports: mediation_worker_lag_typo",
        ),
        (("severity: P0", "severity: P3"), "severity must be P0 or P1"),
        (("#when-a-trigger-fires", "#no-such-section"), "is not a section"),
    ],
)
def test_the_checks_catch_a_wrong_threshold_duration_metric_severity_or_runbook(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    copy = _deploy_copy(tmp_path)
    rules = copy / "prometheus" / "alerts.yml"
    rules.write_text(rules.read_text().replace(*change, 1))
    assert any(expected in problem for problem in rule_problems(copy)), rule_problems(copy)


def test_routing_is_a_placeholder_until_the_on_call_webhook_is_put_in(tmp_path: Path) -> None:
    shipped = DEPLOY_DIR / "alertmanager" / "alertmanager.yml"
    assert [p.split(" is ")[0] for p in routing_problems(shipped)] == [
        "P0 receiver oncall-p0",
        "P1 receiver oncall-p1",
    ]
    configured = tmp_path / "alertmanager.yml"
    configured.write_text(
        shipped.read_text().replace("http://oncall.example.invalid", "https://hooks.example.com")
    )
    assert routing_problems(configured) == []
    no_p0 = tmp_path / "no-p0.yml"
    no_p0.write_text(configured.read_text().replace('severity="P0"', 'severity="P9"'))
    assert routing_problems(no_p0) == ["no route for P0"]
