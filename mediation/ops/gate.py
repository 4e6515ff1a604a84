"""``mediation gate``: the seed's go/no-go list (INFRA-001 section 8) as checks.

1. **database**: Postgres reachable, version 15 or later, every migration
   of ``sql/`` applied and unchanged since (the migration baseline);
2. **redis and broker**: Redis answers a write and a read; the broker
   lists the pipeline's three topics;
3. **closure under peak**: the newest peak-simulation report
   (``mediation simulate --profile peak``) passed and is recent;
4. **alerting**: the alert rules and dashboard check out against the code
   (``mediation.ops.alerting``) and P0/P1 alerts reach a real receiver;
5. **rollback playbook**: a publish operation has been rolled back in this
   environment (the playbook was run at least once).

Each check says what it found; the gate passes only when all do.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg
import redis

from mediation.ops.alerting import DEPLOY_DIR, routing_problems, rule_problems
from mediation.settings import Settings
from storage.db import DatabaseUnavailableError, connect
from storage.run_reads import rolled_back_operations

__all__ = ["GateCheck", "newest_peak_report", "run_gate"]


@dataclass(frozen=True)
class GateCheck:
    item: str
    passed: bool
    detail: str


def _database(settings: Settings) -> GateCheck:
    from storage.migrate import applied_versions, load_migrations

    item = "1. DB connectivity + migration baseline"
    try:
        with connect(settings.database_url) as conn:
            version = conn.info.server_version
            applied = applied_versions(conn)
    except (DatabaseUnavailableError, psycopg.Error) as exc:
        return GateCheck(item, False, f"Postgres: {str(exc).strip()[:200]}")
    if version < 150000:
        return GateCheck(item, False, f"Postgres {version // 10000} (15 or later needed)")
    migrations = load_migrations()
    missing = [m.version for m in migrations if m.version not in applied]
    changed = [m.version for m in migrations if applied.get(m.version, m.checksum) != m.checksum]
    if missing or changed:
        return GateCheck(
            item,
            False,
            f"pending: {', '.join(missing) or 'none'}; changed since applied: "
            f"{', '.join(changed) or 'none'} (run mediation migrate)",
        )
    return GateCheck(
        item, True, f"Postgres {version // 10000}, {len(migrations)} migrations applied as shipped"
    )


def _redis_and_broker(settings: Settings) -> GateCheck:
    from confluent_kafka.admin import AdminClient

    item = "2. Redis + MQ health"
    key = f"{settings.topic_prefix}gate:{uuid.uuid4().hex}"
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=3)
        client.set(key, "1", ex=60)
        readable = client.get(key) == b"1"
        client.delete(key)
    except redis.RedisError as exc:
        return GateCheck(item, False, f"Redis: {exc}")
    if not readable:
        return GateCheck(item, False, "Redis did not return what was written")
    try:
        metadata = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}).list_topics(
            timeout=5
        )
    except Exception as exc:  # confluent_kafka raises KafkaException with a C error inside
        return GateCheck(item, False, f"broker: {exc}")
    topics = settings.topics.all()
    missing = [t for t in topics if t not in metadata.topics or metadata.topics[t].error]
    if missing:
        return GateCheck(item, False, f"broker is up, topics missing: {', '.join(missing)}")
    partitions = {t: len(metadata.topics[t].partitions) for t in topics}
    return GateCheck(
        item, True, "Redis write/read ok; broker topics " + ", ".join(
            f"{t} ({n} partitions)" for t, n in partitions.items()
        ),
    )  # fmt: skip


def newest_peak_report(results: Path) -> Path | None:
    reports = sorted(results.glob("*-peak/summary.json"))
    return reports[-1] if reports else None


def _peak(results: Path, max_age_days: float, now: dt.datetime) -> GateCheck:
    item = "3. end-to-end closure under peak simulation"
    newest = newest_peak_report(results)
    if newest is None:
        return GateCheck(
            item, False, f"no peak report under {results} (run mediation simulate --profile peak)"
        )
    summary = json.loads(newest.read_text())
    age = now - dt.datetime.fromisoformat(summary["started_at"])
    failed = [name for name, check in summary["checks"].items() if not check["ok"]]
    where = f"{newest.parent.name}, {age.total_seconds() / 86400:.1f} days old"
    if age > dt.timedelta(days=max_age_days):
        return GateCheck(item, False, f"{where}: older than {max_age_days:g} days")
    if failed:
        return GateCheck(item, False, f"{where}: failed {', '.join(failed)}")
    return GateCheck(item, True, f"{where}: every check passed")


def _alerting(alertmanager_file: Traversable) -> GateCheck:
    item = "4. alerting + on-call routing for P0/P1"
    problems = rule_problems() + routing_problems(alertmanager_file)
    if problems:
        return GateCheck(item, False, "; ".join(problems))
    return GateCheck(item, True, "rules cover every trigger; P0 and P1 reach their receivers")


def _rollback(settings: Settings) -> GateCheck:
    item = "5. rollback playbook run at least once"
    try:
        with connect(settings.database_url) as conn:
            count, last = rolled_back_operations(conn)
    except (DatabaseUnavailableError, psycopg.Error) as exc:
        return GateCheck(item, False, f"cannot read publish_operations: {str(exc).strip()[:200]}")
    if not count:
        return GateCheck(
            item,
            False,
            "no publish operation was ever rolled back here (run the rollback playbook, "
            "docs/operations.md)",
        )
    return GateCheck(item, True, f"{count} rolled back, the last at {last:%Y-%m-%d %H:%M} UTC")


def run_gate(
    settings: Settings,
    *,
    results: Path,
    alertmanager_file: Traversable = DEPLOY_DIR / "alertmanager" / "alertmanager.yml",
    max_peak_age_days: float = 7.0,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> list[GateCheck]:
    return [
        _database(settings),
        _redis_and_broker(settings),
        _peak(results, max_peak_age_days, now()),
        _alerting(alertmanager_file),
        _rollback(settings),
    ]
