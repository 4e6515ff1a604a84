"""``mediation status``: what the worker processes report about themselves.

Reads each worker's ``/metrics`` (Prometheus text) and prints, per
process, what it has read and written and how far behind it is, then the
lag of every input partition in messages. Bytewax keeps Kafka offsets in
its recovery store, so this (high watermark minus the next offset each
process will read) is the real consumer lag; broker-side group lag is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .tables import render_table

__all__ = ["WorkerReport", "read_worker", "render_status"]

# (column, metric family, how samples combine)
_COLUMNS = (
    ("messages read", "mediation_worker_messages", "sum"),
    ("archives", "mediation_worker_archives", "sum"),
    ("late events", "mediation_worker_late_events", "sum"),
    ("dead letters", "mediation_worker_dead_letters", "sum"),
    ("write retries", "mediation_worker_write_retries", "sum"),
    ("open", "mediation_worker_open_opportunities", "sum"),
    ("tombstones", "mediation_worker_tombstones", "sum"),
    ("batches in flight", "mediation_worker_input_batches_in_flight", "sum"),
    ("event-time lag s", "mediation_worker_event_time_lag_seconds", "max"),
)


@dataclass
class WorkerReport:
    url: str
    error: str | None = None
    values: dict[str, float] = field(default_factory=dict)  # column -> value
    partition_lag: list[tuple[str, str, float]] = field(default_factory=list)


def read_worker(url: str, timeout_s: float = 3.0) -> WorkerReport:
    try:
        text = httpx.get(url, timeout=timeout_s).text
    except httpx.HTTPError as exc:
        return WorkerReport(url, error=f"unreachable: {exc}")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    report = WorkerReport(url)
    for column, name, combine in _COLUMNS:
        family = families.get(name)
        samples = [
            s.value for s in (family.samples if family else []) if not s.name.endswith("_created")
        ]
        if samples:
            report.values[column] = sum(samples) if combine == "sum" else max(samples)
    lag = families.get("mediation_worker_partition_lag_messages")
    for sample in lag.samples if lag else []:
        report.partition_lag.append(
            (sample.labels["topic"], sample.labels["partition"], sample.value)
        )
    return report


def _cell(value: float | None) -> object:
    if value is None:
        return "-"
    return int(value) if value.is_integer() else value


def render_status(reports: Sequence[WorkerReport]) -> str:
    columns = [column for column, _name, _how in _COLUMNS]
    rows: list[list[object]] = []
    for report in reports:
        if report.error is not None:
            rows.append([report.url, report.error, *("-" for _ in columns)])
            continue
        rows.append([report.url, "up", *(_cell(report.values.get(c)) for c in columns)])
    workers = render_table("worker processes", ["metrics", "state", *columns], rows)
    lag_rows = sorted(
        [topic, int(partition), _cell(value), report.url]
        for report in reports
        for topic, partition, value in report.partition_lag
    )
    partitions = render_table(
        "input partitions (lag = broker high watermark - next offset read)",
        ["topic", "partition", "lag messages", "read by"],
        lag_rows,
    )
    return f"{workers}\n\n{partitions}"
