"""``mediation gate``: each go/no-go item checked against the real services."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from mediation.cli import main
from mediation.ops.alerting import DEPLOY_DIR
from mediation.ops.gate import run_gate
from mediation.settings import Settings
from mediation.sim.seed import demo_config, seed_app
from storage.db import connect

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _peak_report(results: Path, started: dt.datetime, ok: bool = True) -> None:
    folder = results / f"{started:%Y%m%dT%H%M%SZ}-peak"
    folder.mkdir(parents=True)
    checks = {"closure": {"ok": True}, "load": {"ok": ok}}
    (folder / "summary.json").write_text(
        json.dumps({"started_at": started.isoformat(), "checks": checks, "passed": ok})
    )


def _routed_alertmanager(tmp_path: Path) -> Path:
    configured = tmp_path / "alertmanager.yml"
    shipped = (DEPLOY_DIR / "alertmanager" / "alertmanager.yml").read_text()
    configured.write_text(shipped.replace("http://oncall.example.invalid", "https://hooks.test"))
    return configured


def _gate(settings: Settings, results: Path, alertmanager: Path) -> dict[str, tuple[bool, str]]:
    checks = run_gate(settings, results=results, alertmanager_file=alertmanager, now=lambda: NOW)
    return {check.item.split(".")[0]: (check.passed, check.detail) for check in checks}


def test_every_item_passes_on_a_ready_environment_and_each_failure_says_why(
    settings: Settings, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    alertmanager = _routed_alertmanager(tmp_path)
    _peak_report(results, NOW - dt.timedelta(days=1))
    gate = _gate(settings, results, alertmanager)
    assert {item: passed for item, (passed, _) in gate.items()} == {
        "1": True, "2": True, "3": True, "4": True, "5": False,
    }  # fmt: skip
    assert "ever rolled back" in gate["5"][1]

    # A rolled-back publish operation: the playbook was run here.
    seed_app(settings.database_url, "gate", demo_config(), None)
    with connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO publish_operations (app_id, version, state, reason) "
            "VALUES ('gate', 1, 'rolled_back', 'drill')"
        )
    assert all(passed for passed, _ in _gate(settings, results, alertmanager).values())

    # Each failure: a stale or failed peak report, placeholder routing, a
    # pending migration, no broker topics.
    _peak_report(results, NOW - dt.timedelta(days=1, minutes=-1), ok=False)
    assert "failed load" in _gate(settings, results, alertmanager)["3"][1]
    stale = tmp_path / "stale"
    _peak_report(stale, NOW - dt.timedelta(days=9))
    assert "older than 7 days" in _gate(settings, stale, alertmanager)["3"][1]
    assert "no peak report" in _gate(settings, tmp_path / "none", alertmanager)["3"][1]
    placeholder = _gate(settings, results, DEPLOY_DIR / "alertmanager" / "alertmanager.yml")
    assert "placeholder" in placeholder["4"][1] and not placeholder["4"][0]
    with connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM schema_migrations WHERE version = '0005_replay_jobs_and_cold_tiers'"
        )
    assert (
        "pending: 0005_replay_jobs_and_cold_tiers" in _gate(settings, results, alertmanager)["1"][1]
    )
    no_topics = dataclasses.replace(settings, topic_prefix="gate-none.")
    assert "topics missing" in _gate(no_topics, results, alertmanager)["2"][1]


def test_the_cli_prints_each_item_and_exits_1_on_no_go(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.delenv("SUPABASE_DB_URL", raising=False)
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", settings.topic_prefix)
    code = main(["gate", "--results", str(tmp_path / "none")])
    out = capsys.readouterr().out
    assert code == 1
    assert "go/no-go gate" in out and "NO-GO: 2/5 passed" in out
