"""``mediation status``: worker progress and lag, and the seed's scaling triggers."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from mediation.cli.common import add_json_flag, print_json, settings

if TYPE_CHECKING:
    from mediation.ops.status import TriggerReading, WorkerReport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway-metrics",
        action="append",
        metavar="URL",
        help="a gateway process's /metrics URL; repeat for each process "
        "(default http://127.0.0.1:8080/metrics and :8081/metrics)",
    )
    parser.add_argument(
        "--window-s",
        type=float,
        default=5.0,
        help="seconds over which latency, ACK success and database load are measured "
        "(0: workers only, no triggers)",
    )
    parser.add_argument(
        "--worker-metrics",
        action="append",
        metavar="URL",
        help="a worker process's /metrics URL; repeat for each process "
        "(default http://127.0.0.1:9464/metrics)",
    )
    add_json_flag(parser)


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _document(
    reports: list[WorkerReport], reading: TriggerReading | None, healthy: bool
) -> dict[str, Any]:
    return {
        "healthy": healthy,
        "workers": [
            {
                "url": r.url,
                "error": r.error,
                "values": {_snake(k): v for k, v in sorted(r.values.items())},
                "partition_lag": [
                    {"topic": topic, "partition": int(partition), "lag_messages": lag}
                    for topic, partition, lag in r.partition_lag
                ],
                "resident_bytes": r.resident_bytes,
            }
            for r in reports
        ],
        "triggers": [
            {
                "name": s.trigger.name,
                "what": s.trigger.what,
                "value": s.value,
                "unit": s.trigger.unit,
                "threshold": s.trigger.describe_threshold(),
                "state": s.state,
                "note": s.note,
                "action": s.trigger.action,
            }
            for s in (reading.states if reading else [])
        ],
        "unreachable_gateways": list(reading.unreachable_gateways) if reading else [],
    }


def run(args: argparse.Namespace) -> int:
    from mediation.ops.status import read_triggers, read_worker, render_status, render_triggers

    urls = args.worker_metrics or ["http://127.0.0.1:9464/metrics"]
    reports = [read_worker(url) for url in urls]
    healthy = all(report.error is None for report in reports)
    if not args.json:  # shown now: the triggers take --window-s to read
        print(render_status(reports))
    reading = None
    if args.window_s > 0:
        current = settings()
        gateways = args.gateway_metrics or [
            "http://127.0.0.1:8080/metrics",
            "http://127.0.0.1:8081/metrics",
        ]
        reading = read_triggers(
            gateways,
            reports,
            current.database_url,
            current.redis_url,
            args.window_s,
            db_cpus=current.db_cpus,
        )
        healthy = (
            healthy
            and not reading.unreachable_gateways
            and all(s.state != "FIRING" for s in reading.states)
        )
    if args.json:
        print_json(_document(reports, reading, healthy))
    elif reading is not None:
        print()
        print(render_triggers(reading.states))
        for url in reading.unreachable_gateways:
            print(f"gateway metrics unreachable: {url}")
    return 0 if healthy else 1
