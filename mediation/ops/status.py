"""``mediation status``: the worker processes, and the seed's scaling triggers.

Reads each worker's ``/metrics`` (Prometheus text) and prints, per
process, what it has read and written and how far behind it is, then the
lag of every input partition in messages. Bytewax keeps Kafka offsets in
its recovery store, so this (high watermark minus the next offset each
process will read) is the real consumer lag; broker-side group lag is not.

Then each scaling trigger (``mediation.rules.triggers``) with its current
value, over a short window (``window_s``): the gateways' ``/metrics`` are
read at its start and end, so p95 latency and ACK success are those of
the window (or since the gateways started, when the window saw no
traffic); Postgres's active backends are sampled through it; Redis's
memory and the workers' event-time lag are read once.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import psycopg
import redis
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from mediation.rules.triggers import TRIGGERS, TriggerState, evaluate, histogram_quantile
from mediation.text_table import render_table
from storage.db import DatabaseUnavailableError, connect
from storage.run_reads import active_client_backends

__all__ = [
    "GatewaySample",
    "TriggerReading",
    "WorkerReport",
    "read_gateway",
    "read_triggers",
    "read_worker",
    "render_status",
    "render_triggers",
]

_SYNC_ROUTE = "/v1/requests"

# (column, metric family, how samples combine)
_COLUMNS = (
    ("messages read", "mediation_worker_messages", "sum"),
    ("archives", "mediation_worker_archives", "sum"),
    ("late events", "mediation_worker_late_events", "sum"),
    ("dead letters", "mediation_worker_dead_letters", "sum"),
    ("write retries", "mediation_worker_write_retries", "sum"),
    ("open", "mediation_worker_open_opportunities", "sum"),
    ("tombstones", "mediation_worker_tombstones", "sum"),
    ("partitions", "mediation_worker_partitions_owned", "sum"),
    ("event-time lag s", "mediation_worker_event_time_lag_seconds", "max"),
)


@dataclass
class WorkerReport:
    url: str
    error: str | None = None
    values: dict[str, float] = field(default_factory=dict)  # column -> value
    partition_lag: list[tuple[str, str, float]] = field(default_factory=list)
    resident_bytes: float | None = None  # the process's RSS


def _scrape(url: str, timeout_s: float) -> list[Metric] | str:
    """The metric families of one ``/metrics`` URL, or why it could not be read."""
    try:
        response = httpx.get(url, timeout=timeout_s)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return f"unreachable: {exc}"
    # Something else answering there (a typo in the port or path) is said as such.
    if response.status_code != 200:
        return f"not a metrics endpoint: HTTP {response.status_code}"
    try:
        return list(text_string_to_metric_families(response.text))
    except ValueError:  # the parser's only complaint, e.g. about an HTML page
        return "not a metrics endpoint: the answer is not Prometheus text"


def read_worker(url: str, timeout_s: float = 3.0) -> WorkerReport:
    scraped = _scrape(url, timeout_s)
    if isinstance(scraped, str):
        return WorkerReport(url, error=scraped)
    families = {family.name: family for family in scraped}
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
    resident = families.get("process_resident_memory_bytes")
    if resident and resident.samples:
        report.resident_bytes = resident.samples[0].value
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
            rows.append([report.url, report.error, *("-" for _ in columns), "-"])
            continue
        memory = "-" if report.resident_bytes is None else round(report.resident_bytes / 2**20)
        values = (_cell(report.values.get(c)) for c in columns)
        rows.append([report.url, "up", *values, memory])
    columns.append("memory MiB")
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


@dataclass
class GatewaySample:
    url: str
    error: str | None = None
    sync_buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    batches_acked: float = 0.0
    batches_unconfirmed: float = 0.0
    sync_answered: float = 0.0  # sync requests answered with a delivery
    events_accepted: float = 0.0
    server_errors: float = 0.0  # 5xx answers, every route
    resident_bytes: float | None = None  # the process's RSS


def read_gateway(url: str, timeout_s: float = 3.0) -> GatewaySample:
    """The counters the triggers (and the peak simulation) need from one gateway's ``/metrics``."""
    scraped = _scrape(url, timeout_s)
    if isinstance(scraped, str):
        return GatewaySample(url, error=scraped)
    sample = GatewaySample(url)
    for family in scraped:
        for s in family.samples:
            if s.name == "mediation_http_request_seconds_bucket" and (
                s.labels.get("route") == _SYNC_ROUTE
            ):
                bound = float(s.labels["le"])
                sample.sync_buckets[bound] = sample.sync_buckets.get(bound, 0.0) + s.value
            elif s.name == "mediation_event_batches_acked_total":
                sample.batches_acked += s.value
            elif s.name == "mediation_event_batches_unconfirmed_total":
                sample.batches_unconfirmed += s.value
            elif s.name == "mediation_opportunities_total":
                sample.sync_answered += s.value
            elif s.name == "mediation_events_accepted_total":
                sample.events_accepted += s.value
            elif s.name == "mediation_http_requests_total" and s.labels["status"].startswith("5"):
                sample.server_errors += s.value
            elif s.name == "process_resident_memory_bytes":
                sample.resident_bytes = s.value
    return sample


def _sum_buckets(samples: Sequence[GatewaySample]) -> dict[float, float]:
    total: dict[float, float] = defaultdict(float)
    for sample in samples:
        for bound, count in sample.sync_buckets.items():
            total[bound] += count
    return total


def _p95_ms(buckets: dict[float, float]) -> float | None:
    value = histogram_quantile(0.95, sorted(buckets.items()))
    return None if value is None else value * 1000


def _db_active_backends(database_url: str) -> float | None:
    try:
        with connect(database_url, timeout_s=3) as conn:
            return float(active_client_backends(conn))
    except (DatabaseUnavailableError, psycopg.Error):
        return None


def _redis_memory_percent(redis_url: str) -> tuple[float | None, str]:
    try:
        info = redis.Redis.from_url(redis_url, socket_timeout=2).info("memory")
    except redis.RedisError as exc:
        return None, f"unreachable: {exc}"
    used = float(info.get("used_memory", 0))
    if info.get("maxmemory"):
        return 100 * used / float(info["maxmemory"]), "of maxmemory"
    if info.get("total_system_memory"):
        return 100 * used / float(info["total_system_memory"]), "of system memory (no maxmemory)"
    return None, "neither maxmemory nor system memory reported"


@dataclass
class TriggerReading:
    states: list[TriggerState]
    unreachable_gateways: list[str]  # /metrics URLs that did not answer at the start or end


def read_triggers(
    gateway_urls: Sequence[str],
    workers: Sequence[WorkerReport],
    database_url: str,
    redis_url: str,
    window_s: float = 5.0,
    db_cpus: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> TriggerReading:
    """Every scaling trigger's current value and state, and which gateways did not answer."""
    cpus = db_cpus or os.cpu_count() or 1  # Settings.db_cpus; 0 or None: this machine's
    before = [read_gateway(url) for url in gateway_urls]
    active: list[float] = []
    deadline = time.monotonic() + window_s
    while True:
        value = _db_active_backends(database_url)
        if value is not None:
            active.append(value)
        if time.monotonic() >= deadline:
            break
        sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    after = [read_gateway(url) for url in gateway_urls]
    reachable = [(b, a) for b, a in zip(before, after, strict=True) if not (b.error or a.error)]
    states = {}

    # Sync p95 over the window; since the gateways started when the window was quiet.
    window = {
        bound: count - _sum_buckets([b for b, _ in reachable]).get(bound, 0.0)
        for bound, count in _sum_buckets([a for _, a in reachable]).items()
    }
    p95, note = _p95_ms(window), f"last {window_s:g} s"
    if p95 is None:
        p95, note = _p95_ms(_sum_buckets([a for _, a in reachable])), "since start (quiet window)"
    if not reachable:
        note = "no gateway metrics reachable"
    states["sync_p95_latency"] = (p95, note)

    acked = sum(a.batches_acked - b.batches_acked for b, a in reachable)
    failed = sum(a.batches_unconfirmed - b.batches_unconfirmed for b, a in reachable)
    note = f"last {window_s:g} s"
    if acked + failed == 0:
        acked = sum(a.batches_acked for _, a in reachable)
        failed = sum(a.batches_unconfirmed for _, a in reachable)
        note = "since start (quiet window)"
    ratio = 100 * acked / (acked + failed) if acked + failed else None
    states["ack_success"] = (ratio, note if reachable else "no gateway metrics reachable")

    lags = [r.values["event-time lag s"] for r in workers if "event-time lag s" in r.values]
    states["consumer_lag"] = (
        max(lags) if lags else None,
        "max over workers" if lags else "no worker metrics reachable",
    )
    states["db_cpu"] = (
        100 * sum(active) / len(active) / cpus if active else None,
        f"mean active backends / {cpus} cores" if active else "Postgres unreachable",
    )
    states["redis_memory"] = _redis_memory_percent(redis_url)
    return TriggerReading(
        [evaluate(trigger, *states[trigger.name]) for trigger in TRIGGERS],
        [b.url for b, a in zip(before, after, strict=True) if b.error or a.error],
    )


def _value(state: TriggerState) -> str:
    if state.value is None or math.isnan(state.value):
        return "-"
    return f"{state.value:,.2f} {state.trigger.unit}".replace(" %", "%")


def render_triggers(states: Sequence[TriggerState]) -> str:
    rows = [
        [s.trigger.what, _value(s), s.trigger.describe_threshold(), s.state, s.note] for s in states
    ]
    table = render_table(
        "scaling triggers (seed section 6; alerts hold each for its duration)",
        ["trigger", "now", "fires when", "state", "measured"],
        rows,
    )
    actions = [f"  {s.trigger.what}: {s.trigger.action}" for s in states if s.state == "FIRING"]
    if actions:
        table += "\n\nrecommended actions:\n" + "\n".join(actions)
    return table
