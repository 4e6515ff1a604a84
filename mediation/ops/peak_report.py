"""The peak-simulation report: ``report.md``, ``summary.json`` and PNG charts in one folder.

The run passes when all four checks hold:

- **closure**: every answered request has exactly one archive record that
  equals the rules' recompute from its stored inputs, every ACKed event is
  stored exactly once, and every orphan is stored as one
  (``mediation.sim.verify.reconcile``). How many records also say what the SDK
  expected is reported beside it: under load the generator's own queueing
  moves events' server time (``server_ts`` = received - (sent_at - ts)),
  and the rules then rightly order or window them otherwise than the SDK
  expected (the demo, unloaded, requires that agreement too);
- **load**: the simulator achieved at least 95% of the offered request rate
  (a machine that cannot generate the peak has not validated it);
- **ACK success** >= 99.9% of event batches;
- **sync p95** <= 300 ms, as the gateway measured it over the whole run
  (the trigger's measure; the SDK side, which adds the simulator's own
  queueing on the machine it shares, is reported beside it).

A soak (``--profile soak``) adds a fifth:

- **memory**: the gateway's and the worker's resident memory, read from
  their ``/metrics`` every second, stays flat after the warm-up
  (``mediation.rules.soak``).

The charts need matplotlib, the ``reports`` extra: without it, importing
this module (which ``mediation.ops.peak`` does before the run starts) stops
with one line naming the extra.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediation.extras import missing_extra

try:
    import matplotlib
except ImportError:
    raise missing_extra("the peak-simulation report", "reports") from None

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from mediation.rules.soak import memory_rise
from mediation.rules.triggers import histogram_quantile
from mediation.sim.summary import percentile

if TYPE_CHECKING:
    from mediation.ops.profiles import Profile, Sample
    from mediation.sim.demo import PipelineRun

__all__ = ["write_report"]

_LOAD_SHARE = 0.95
_ACK_SUCCESS = 0.999
_P95_MS = 300.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _memory_check(samples: list[Sample], warmup_s: float) -> dict[str, Any]:
    parts, flat = [], True
    for process in ("gateway", "worker"):
        points = [(s.at_s, v) for s in samples if (v := getattr(s, f"{process}_rss_mib"))]
        rise = memory_rise(points, warmup_s)
        if rise is None:
            parts.append(f"{process}: too few samples after the {warmup_s:g} s warm-up")
            flat = False
            continue
        parts.append(
            f"{process} {rise.rise_mib:+.1f} MiB from {rise.start_mib:.0f} MiB over "
            f"{rise.span_s:.0f} s ({rise.per_minute_mib:+.2f} MiB/min)"
        )
        flat = flat and rise.flat
    return {
        "value": "; ".join(parts),
        "threshold": f"fitted rise after the {warmup_s:g} s warm-up <= max(16 MiB, 10%)",
        "ok": flat,
    }


def _checks(
    profile: Profile, samples: list[Sample], run: PipelineRun, gateway_buckets: dict[float, float]
) -> dict[str, dict[str, Any]]:
    report, rec = run.report, run.reconciliation
    # Whole seconds of traffic only: the first and last samples are partial.
    steady = samples[1:-1] or samples
    achieved = _mean([s.requests_per_s / s.offered_rps for s in steady if s.offered_rps])
    quantile = histogram_quantile(0.95, sorted(gateway_buckets.items()))
    p95 = None if quantile is None else quantile * 1000
    checks: dict[str, dict[str, Any]] = {
        "closure": {
            "value": f"{rec.archived}/{rec.opportunities} archived once, "
            f"{rec.opportunities - len(rec.recompute_mismatches)}/{rec.opportunities} equal "
            f"to the rules' recompute, {rec.events_stored}/{rec.events_expected} events once, "
            f"{rec.orphans_stored}/{rec.orphans_expected} orphans",
            "threshold": "all",
            "ok": rec.closed_exactly_once,
        },
        "load": {
            "value": round(achieved, 3),
            "threshold": f">= {_LOAD_SHARE} of the offered request rate",
            "ok": achieved >= _LOAD_SHARE,
        },
        "ack_success": {
            "value": round(report.ack_ratio, 5),
            "threshold": f">= {_ACK_SUCCESS}",
            "ok": report.ack_ratio >= _ACK_SUCCESS,
        },
        "gateway_sync_p95_ms": {
            "value": round(p95, 1) if p95 is not None else None,
            "threshold": f"<= {_P95_MS:g}",
            "ok": p95 is not None and p95 <= _P95_MS,
        },
    }
    if profile.checks_memory:
        checks["memory"] = _memory_check(samples, profile.warmup_s)
    return checks


def _agreement(run: PipelineRun) -> str:
    rec = run.reconciliation
    compared = rec.archived - rec.expectations_delayed
    return (
        f"{compared - len(rec.expectation_mismatches)} of {compared} compared; "
        f"{rec.expectations_delayed} not compared (a batch the load generator delayed past "
        "the grace or the window)"
    )


def _chart(path: Path, title: str, ylabel: str, series: dict[str, list[tuple[float, float]]],
           threshold: float | None = None) -> None:  # fmt: skip
    figure, axes = plt.subplots(figsize=(9, 3.6), dpi=100)
    plotted = [label for label, points in series.items() if points]
    for label in plotted:
        points = series[label]
        axes.plot([x for x, _ in points], [y for _, y in points], label=label, linewidth=1.4)
    if threshold is not None:
        axes.axhline(threshold, color="red", linestyle="--", linewidth=1, label="trigger")
    axes.set_title(title if plotted else f"{title} (not measured)")
    axes.set_xlabel("seconds")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if plotted or threshold is not None:
        axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _charts(folder: Path, samples: list[Sample]) -> list[str]:
    def points(attribute: str) -> list[tuple[float, float]]:
        return [(s.at_s, v) for s in samples if (v := getattr(s, attribute)) is not None]

    _chart(folder / "throughput.png", "throughput", "per second", {
        "offered requests/s": points("offered_rps"),
        "answered requests/s": points("requests_per_s"),
        "events ACKed/s": points("events_per_s"),
    })  # fmt: skip
    _chart(folder / "latency.png", "sync request p95 (gateway)", "ms",
           {"p95 ms": points("gateway_p95_ms")}, _P95_MS)  # fmt: skip
    _chart(folder / "lag.png", "worker event-time lag", "seconds",
           {"lag s": points("worker_lag_s")}, 300.0)  # fmt: skip
    _chart(folder / "memory.png", "resident memory", "MiB", {
        "gateway": points("gateway_rss_mib"),
        "worker": points("worker_rss_mib"),
    })  # fmt: skip
    return ["throughput.png", "latency.png", "lag.png", "memory.png"]


def write_report(
    folder: Path,
    profile: Profile,
    duration_s: float,
    samples: list[Sample],
    run: PipelineRun,
    started: dt.datetime,
    wall_s: float,
    gateway_buckets: dict[float, float],
) -> bool:
    """Write the report files into ``folder`` (created); whether every check passed."""
    folder.mkdir(parents=True, exist_ok=True)
    checks = _checks(profile, samples, run, gateway_buckets)
    passed = all(check["ok"] for check in checks.values())
    report = run.report
    charts = _charts(folder, samples)
    lags = [s.worker_lag_s for s in samples if s.worker_lag_s is not None]
    summary = {
        "profile": profile.name,
        "description": profile.description,
        "started_at": started.isoformat(),
        "duration_s": duration_s,
        "wall_s": round(wall_s, 1),
        "schedule": [list(step) for step in profile.schedule(duration_s)],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "requests_sent": report.requests_sent,
        "requests_ok": report.requests_ok,
        "events_accepted": report.events_accepted,
        "events_rejected": sum(report.events_rejected.values()),
        "request_p50_ms": percentile(report.request_latency_ms, 50),
        "request_p95_ms": percentile(report.request_latency_ms, 95),
        "request_p99_ms": percentile(report.request_latency_ms, 99),
        "batch_p95_ms": percentile(report.batch_latency_ms, 95),
        "max_worker_lag_s": max(lags) if lags else None,
        "checks": checks,
        "passed": passed,
        "samples": [s.__dict__ for s in samples],
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = "\n".join(
        f"| {name} | {check['value']} | {check['threshold']} | "
        f"{'pass' if check['ok'] else 'FAIL'} |"
        for name, check in checks.items()
    )
    steps = ", ".join(f"{rps:g} req/s from {at:g} s" for at, rps in profile.schedule(duration_s))
    lines = [
        f"# {'Soak' if profile.checks_memory else 'Peak simulation'}: {profile.name} "
        f"({'PASSED' if passed else 'FAILED'})",
        "",
        f"{profile.description}. Started {started:%Y-%m-%d %H:%M:%S} UTC; {duration_s:g} s of "
        f"traffic ({steps}); {wall_s:.0f} s in all with closing and verification.",
        "",
        "| check | value | needs | result |",
        "|---|---|---|---|",
        rows,
        "",
        f"- Requests: {report.requests_sent:,} sent, {report.requests_ok:,} answered 200 "
        f"({report.fills:,} fills, {report.no_fills:,} no-fills); errors "
        f"{dict(report.request_errors) or 'none'}.",
        f"- Events: {report.events_accepted:,} accepted, "
        f"{sum(report.events_rejected.values()):,} rejected by design (malformed, orphan "
        f"tests); batch errors {dict(report.batch_errors) or 'none'}; bodies that are not "
        f"JSON, sent on purpose, answered {dict(report.invalid_bodies) or 'none sent'}.",
        "- Sync latency as the SDK measured it (with the simulator's own queueing): "
        f"p50 {summary['request_p50_ms']:.1f} ms, p95 "
        f"{summary['request_p95_ms']:.1f} ms, p99 {summary['request_p99_ms']:.1f} ms; "
        f"event batches p95 {summary['batch_p95_ms']:.1f} ms.",
        f"- Archive records that also say what the SDK expected: {_agreement(run)}.",
        f"- Worker event-time lag: max "
        f"{summary['max_worker_lag_s'] if lags else 'not measured'} s.",
        "",
        *(f"![{name}]({name})" for name in charts),
        *(
            [
                "",
                "## First mismatches",
                "",
                "```",
                *(
                    run.reconciliation.recompute_mismatches
                    + run.reconciliation.expectation_mismatches
                    + run.reconciliation.missing_event_ids
                )[:10],
                "```",
            ]
            if not run.reconciliation.ok
            else []
        ),
        "",
        "## Summary from Postgres",
        "",
        "```",
        run.summary,
        "```",
        "",
    ]
    (folder / "report.md").write_text("\n".join(lines))
    return passed
