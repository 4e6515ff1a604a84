"""The peak-simulation pieces that need no stack: schedules, merged reports, the report files."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

from mediation.ops.peak import PROFILES, Sample
from mediation.ops.peak_report import write_report
from mediation.sim.demo import PipelineRun
from mediation.sim.simulate import Expectation, SimulationConfig, SimulationReport, merge_reports
from mediation.sim.verify import Reconciliation


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
    assert {p.name for p in tmp_path.glob("*.png")} == {
        "throughput.png", "latency.png", "lag.png", "memory.png",
    }  # fmt: skip
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


def test_a_soak_also_needs_flat_memory_after_its_warm_up(tmp_path: Path) -> None:
    soak = PROFILES["soak"]
    assert soak.base_rps == soak.burst_rps == 200 and soak.warmup_s == 77
    assert soak.at_rate(50).burst_rps == 50 and PROFILES["peak"].at_rate(100).burst_rps == (
        PROFILES["peak"].burst_rps / 2
    )
    run = PipelineRun(_report(1), Reconciliation(opportunities=3, archived=3), "summary")
    buckets = {0.05: 100.0, float("inf"): 100.0}
    started = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)

    def samples(worker_mib_per_s: float) -> list[Sample]:
        # Memory grows through the warm-up, then as the worker's slope says.
        return [
            Sample(float(t), 200.0, 200.0, 360.0, 40.0, 0, 0.2, 90.0 + min(t, 77) * 0.2,
                   120.0 + min(t, 77) * 0.5 + max(0, t - 77) * worker_mib_per_s)
            for t in range(1, 300)
        ]  # fmt: skip

    assert write_report(tmp_path / "flat", soak, 300, samples(0.0), run, started, 400.0, buckets)
    flat = json.loads((tmp_path / "flat" / "summary.json").read_text())["checks"]["memory"]
    assert flat["ok"] and "worker +0.0 MiB from 158 MiB" in flat["value"]
    assert "# Soak: soak (PASSED)" in (tmp_path / "flat" / "report.md").read_text()

    assert not write_report(tmp_path / "leak", soak, 300, samples(0.1), run, started, 400.0,
                            buckets)  # fmt: skip
    leak = json.loads((tmp_path / "leak" / "summary.json").read_text())["checks"]["memory"]
    assert not leak["ok"] and "+6.00 MiB/min" in leak["value"]
