"""promtool on ``deploy/prometheus``: the alert rules' unit tests, the rules, the scrape config.

``deploy/prometheus/tests/alerts_test.yml`` holds promtool's unit tests of
the rules: every alert fires on a series that crosses its threshold for its
``for:`` duration (with its labels and runbook), and stays quiet on one
that does not. promtool comes from Debian's ``prometheus`` package
(``scripts/bootstrap.sh`` installs it as root); without it these tests skip
with the reason, and fail under CI, where a skip would lose the check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROMETHEUS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"
# Where the compose stack mounts the config and the rules
# (docker-compose.yml), so the config names the rules by this path.
MOUNT_DIR = "/etc/prometheus/"


def find_promtool() -> str:
    """promtool's path; skip (with the reason) when it is missing, fail under CI."""
    promtool = shutil.which("promtool")
    if promtool is None:
        reason = "no promtool (Debian: apt-get install prometheus; scripts/bootstrap.sh as root)"
        if os.environ.get("CI"):
            pytest.fail(f"CI without promtool: {reason}")
        pytest.skip(reason)
    return promtool


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_promtool()


def run_promtool(promtool: str, *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, check=False, cwd=cwd)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(f"promtool {' '.join(args)} exited {result.returncode}:\n{output}")
    return output


def test_the_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)


def test_promtool_accepts_the_rules(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(_alerts())} rules found" in output, output


def test_promtool_accepts_the_scrape_config_as_the_compose_stack_mounts_it(
    promtool: str, tmp_path: Path
) -> None:
    # The shipped file as it is: its syntax (the rule file it names lives
    # in the container).
    run_promtool(promtool, "check", "config", "--syntax-only", str(SCRAPE_CONFIG))
    # And whole, rule files included, in a copy of the container's
    # /etc/prometheus.
    config = SCRAPE_CONFIG.read_text(encoding="utf-8")
    rule_files = yaml.safe_load(config)["rule_files"]
    assert rule_files and all(f.startswith(MOUNT_DIR) for f in rule_files), rule_files
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    mounted = tmp_path / SCRAPE_CONFIG.name
    mounted.write_text(config.replace(MOUNT_DIR, f"{tmp_path}/"), encoding="utf-8")
    output = run_promtool(promtool, "check", "config", str(mounted))
    assert f"SUCCESS: {len(rule_files)} rule files found" in output, output


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _alerts() -> list[str]:
    return [r["alert"] for g in _load(ALERTS)["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_test_where_it_fires_and_one_where_it_stays_quiet() -> None:
    tests = _load(RULE_TESTS)
    assert [(RULE_TESTS.parent / f).resolve() for f in tests["rule_files"]] == [ALERTS]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = _alerts()
    assert alerts
    assert [a for a in alerts if a not in firing] == [], "alerts without a firing test"
    assert [a for a in alerts if a not in quiet] == [], "alerts without a quiet test"
    assert sorted((firing | quiet) - set(alerts)) == [], "tests of alerts that do not exist"


def test_a_missing_promtool_skips_with_the_reason_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no promtool"):
        find_promtool()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI without promtool"):
        find_promtool()
