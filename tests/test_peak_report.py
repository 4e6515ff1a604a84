"""The peak-simulation pieces that need no stack: schedules, merged reports, the report files."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

from mediation.demo import PipelineRun
from mediation.peak import PROFILES, Sample
from mediation.peak_report import write_report
from mediation.simulate import Expectation, SimulationConfig, SimulationReport, merge_reports
from mediation.verify import Reconciliation


def test_profiles_follow_the_seed_and_burst_in_the_middle() -> None:
    peak = PROFILES["peak"]
    assert peak.base_rps == 200 and round(peak.burst_rps * 1.8) == 600
    assert peak.schedule(120) == ((0.0, 200.0), (60.0, peak.burst_rps), (90.0, 200.0))
    assert PROFILES["10x"].base_rps == 2000
    config = SimulationConfig("http://x", "k", rate_rps=5, rate_schedule=peak.schedule(120))
    assert [config.rate_at(t) for t in (0, 59.9, 60, 89, 90, 200)] == [
        200, 200, peak.burst_rps, peak.burst_rps, 200, 200,
    ]  # fmt: skip
    assert SimulationConfig("http://x", "k", rate_rps=5).rate_at(30) == 5


def _report(n: int, errors: int = 0) -> SimulationReport:
    report = SimulationReport(started_at_ms=1_000 * n, finished_at_ms=2_000 * n)
    report.requests_sent = report.requests_ok = 10 * n
    report.batches_sent, report.events_accepted = 20 * n, 30 * n
    report.batch_errors = Counter({"503": errors}) if errors else Counter()
    report.request_latency_ms = [float(n)] * 10
    report.expectations = {f"k{n}-{i}": Expectation("loaded", "a", 0, False, ()) for i in range(3)}
    return report


def test_reports_of_several_simulator_processes_merge() -> None:
    merged = merge_reports([_report(1), _report(2, errors=1)])
    assert (merged.requests_sent, merged.batches_sent, merged.events_accepted) == (30, 60, 90)
    assert (merged.started_at_ms, merged.finished_at_ms) == (1_000, 4_000)
    assert merged.batch_errors == Counter({"503": 1}) and len(merged.expectations) == 6
    assert len(merged.request_latency_ms) == 20


def test_the_report_passes_only_when_every_check_holds(tmp_path: Path) -> None:
    profile = PROFILES["peak"]
    samples = [Sample(float(t), 200.0, 198.0, 356.0, 40.0, 0, 0.2) for t in range(1, 12)]
    good = PipelineRun(_report(1), Reconciliation(opportunities=3, archived=3), "summary")
    buckets = {0.05: 90.0, 0.1: 100.0, float("inf"): 100.0}
    started = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    assert write_report(tmp_path, profile, 10, samples, good, started, 30.0, buckets)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] and {c["ok"] for c in summary["checks"].values()} == {True}
    assert summary["checks"]["gateway_sync_p95_ms"]["value"] == 75.0
    assert {p.name for p in tmp_path.glob("*.png")} == {"throughput.png", "latency.png", "lag.png"}
    assert (tmp_path / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "# Peak simulation: peak (PASSED)" in (tmp_path / "report.md").read_text()

    slow = [Sample(float(t), 200.0, 90.0, 160.0, 400.0, 3, 0.2) for t in range(1, 12)]
    bad = PipelineRun(_report(1), Reconciliation(opportunities=3, archived=2), "summary")
    assert not write_report(tmp_path / "bad", profile, 10, slow, bad, started, 30.0,
                            {0.5: 100.0, float("inf"): 100.0})  # fmt: skip
    checks = json.loads((tmp_path / "bad" / "summary.json").read_text())["checks"]
    assert {name for name, c in checks.items() if not c["ok"]} == {
        "closure", "load", "gateway_sync_p95_ms",
    }  # fmt: skip
    assert "FAILED" in (tmp_path / "bad" / "report.md").read_text()
