"""The readable summary of a run: what the simulator saw and what Postgres holds."""

from __future__ import annotations

import datetime as dt
import statistics

import psycopg

from mediation.sim.simulate import SimulationReport
from mediation.sim.verify import Reconciliation
from mediation.text_table import render_table
from storage.run_reads import (
    archive_close_reasons,
    archive_lags_ms,
    archive_outcomes,
    dead_letter_counts,
    event_counts,
)

__all__ = ["percentile", "render_summary"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


def _since(report: SimulationReport) -> dt.datetime:
    return dt.datetime.fromtimestamp(report.started_at_ms / 1000, tz=dt.UTC) - dt.timedelta(
        seconds=1
    )


def render_summary(
    conn: psycopg.Connection, report: SimulationReport, reconciliation: Reconciliation
) -> str:
    since = _since(report)
    day_from = since.date()
    sections = []
    duration_s = max(0.001, (report.finished_at_ms - report.started_at_ms) / 1000)
    events_per_request = report.events_accepted / max(1, report.requests_ok)
    sections.append(
        render_table(
            "Simulated SDK traffic",
            ["measure", "value"],
            [
                ["sync requests sent", report.requests_sent],
                [
                    "  answered 200 (fill / no_fill)",
                    f"{report.requests_ok} ({report.fills} / {report.no_fills})",
                ],
                ["  request errors", dict(report.request_errors) or 0],
                ["request rate (req/s)", report.requests_sent / duration_s],
                [
                    "request latency p50 / p95 / p99 (ms)",
                    " / ".join(
                        f"{percentile(report.request_latency_ms, q):.1f}" for q in (50, 95, 99)
                    ),
                ],
                ["event batches sent (incl. resends)", report.batches_sent],
                ["  batch errors by status", dict(report.batch_errors) or 0],
                ["  batch ACK ratio", f"{report.ack_ratio:.4f}"],
                ["invalid bodies sent on purpose: answers", dict(report.invalid_bodies) or 0],
                [
                    "batch latency p50 / p95 / p99 (ms)",
                    " / ".join(
                        f"{percentile(report.batch_latency_ms, q):.1f}" for q in (50, 95, 99)
                    ),
                ],
                ["events sent", report.events_sent],
                ["  accepted (broker-confirmed)", report.events_accepted],
                ["  rejected per item", dict(report.events_rejected) or 0],
                ["  accepted events per answered request", f"{events_per_request:.2f}"],
                ["batches resent on purpose (duplicates)", report.resent_batches],
                ["conflicting copies sent", report.conflicts_sent],
                ["orphan events sent", report.orphans_sent],
            ],
        )
    )

    stored = event_counts(conn, day_from, since)
    letters = dead_letter_counts(conn, day_from, since)
    conflicts = sum(n for reason, n in letters if reason == "duplicate_conflict")
    absorbed = report.events_accepted - stored[0] - conflicts
    sections.append(
        render_table(
            "Events in Postgres",
            ["measure", "value"],
            [
                ["distinct events stored", stored[0]],
                ["  stored but not counted (excluded)", stored[2]],
                ["  late (after their archive record)", stored[1]],
                ["duplicates absorbed (accepted - stored - conflicts)", absorbed],
            ],
        )
    )

    outcomes = archive_outcomes(conn, day_from, since)
    sections.append(
        render_table(
            "Archive records by outcome",
            ["outcome", "records", "rewarded", "revenue (USD)"],
            [[o, n, r, f"{rev / 1e6:,.4f}"] for o, n, r, rev in outcomes],
        )
    )
    reasons = archive_close_reasons(conn, day_from, since)
    sections.append(
        render_table(
            "Archive records by close reason",
            ["close_reason", "records"],
            [list(r) for r in reasons],
        )
    )
    sections.append(render_table("Dead letters", ["reason", "count"], [list(r) for r in letters]))

    lags = archive_lags_ms(conn, day_from, since)
    after_close = [a for a, _ in lags]
    after_request = [b for _, b in lags]
    sections.append(
        render_table(
            "End-to-end lag (ms)",
            ["measure", "p50", "p95", "max"],
            [
                [
                    "archive written after close time",
                    percentile(after_close, 50),
                    percentile(after_close, 95),
                    max(after_close, default=0.0),
                ],
                [
                    "archive written after sync request",
                    percentile(after_request, 50),
                    percentile(after_request, 95),
                    max(after_request, default=0.0),
                ],
            ],
        )
    )
    r = reconciliation
    sections.append(
        render_table(
            "Reconciliation",
            ["check", "result"],
            [
                [
                    "opportunities with exactly one archive record",
                    f"{r.archived} / {r.opportunities}",
                ],
                [
                    "archive == rules recomputed from stored inputs",
                    f"{r.archived - len(r.recompute_mismatches)} / {r.archived}",
                ],
                [
                    "archive == simulator's expectation",
                    f"{r.archived - r.expectations_delayed - len(r.expectation_mismatches)} / "
                    f"{r.archived - r.expectations_delayed}"
                    + (
                        f" ({r.expectations_delayed} delayed: not compared)"
                        if r.expectations_delayed
                        else ""
                    ),
                ],
                ["ACKed event ids stored exactly once", f"{r.events_stored} / {r.events_expected}"],
                [
                    "orphans stored as unknown_opportunity",
                    f"{r.orphans_stored} / {r.orphans_expected}",
                ],
                ["verdict", "PASS" if r.ok else "FAIL"],
            ],
        )
    )
    return "\n\n".join(sections)
