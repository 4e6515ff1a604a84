"""The whole path on real services: SDK -> gateway -> Kafka -> Bytewax -> Postgres.

The gateway and the dataflow worker (one process, and two members each
owning half of the partitions) run as child processes exactly as operators
start them (``mediation api``, ``mediation worker --partitions``). Traffic
comes from the simulated SDK (duplicates, reordering, clock skew, malformed
events, orphans, conflicting copies) plus one malformed message written
straight to the events topic. Afterwards every opportunity must have
exactly one archive record that equals what the pure rules compute from
the stored inputs; and the report and the impression export of those
records say what the archive records say, before and after their day is
tiered.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from mediation.settings import Settings
from mediation.sim.processes import free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app
from mediation.sim.simulate import SimulationConfig, run_simulation
from mediation.sim.verify import count_archived, reconcile
from mediation.topics import producer_config
from storage.cold import FileColdStore
from storage.db import connect
from storage.partitions import PARTITIONED_TABLES
from storage.tier_job import tier_day

pytestmark = pytest.mark.integration

CLOSURE_WINDOW_MS = 5_000
GRACE_MS = 2_000
LATENESS_MS = 2_000


def _wait(condition, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def _produce_raw(settings: Settings, value: bytes) -> tuple[int, int]:
    producer = Producer(producer_config(settings.kafka_bootstrap_servers, {"acks": "all"}))
    positions: list[tuple[int, int]] = []
    producer.produce(
        settings.topics.events,
        value,
        b"not-a-ulid",
        on_delivery=lambda err, msg: positions.append((msg.partition(), msg.offset())),
    )
    producer.flush(10)
    return positions[0]


def _read_topic(settings: Settings, topic: str) -> list[dict[str, object]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": "e2e-reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.kafka_partitions)])
    values = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for message in consumer.consume(500, 0.3):
            if message.error() is None:
                values.append(orjson.loads(message.value()))
    consumer.close()
    return values


def _cli_json(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        mediation_command(*args),
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _report_and_export_equal_the_archives(
    settings: Settings, child_env: dict[str, str], cold: Path
) -> None:
    """The main job's records, reported and exported, before and after tiering their days."""
    env = {**child_env, "COLD_STORAGE_URL": cold.as_uri()}
    with connect(settings.database_url, autocommit=True) as conn:
        days = [row[0] for row in conn.execute("SELECT DISTINCT day FROM archive_records")]
        counts = {
            (app, source): (int(requests), int(fills), int(impressions))
            for app, source, requests, fills, impressions in conn.execute(
                "SELECT app_id, credited_source_id, count(*), count(*) FILTER (WHERE outcome "
                "IN ('loaded', 'impressed', 'clicked')), "
                "sum(coalesce((counts->>'impression')::int, 0)) FROM archive_records GROUP BY 1, 2"
            )
        }
        revenue = {
            (app, source, currency.strip()): int(micros)
            for app, source, currency, micros in conn.execute(
                "SELECT app_id, credited_source_id, currency, sum(revenue_micros) "
                "FROM archive_records WHERE revenue_micros > 0 GROUP BY 1, 2, 3"
            )
        }
    span = ("--from", min(days).isoformat(), "--to", max(days).isoformat())
    hot_report = _cli_json(env, "report", *span, "--by", "app,source", "--json")
    rows = orjson.loads(hot_report)["rows"]
    assert {
        (row["app_id"], row["source_id"]): (row["requests"], row["fills"], row["impressions"])
        for row in rows
    } == counts
    assert {
        (row["app_id"], row["source_id"], row["currency"]): row["revenue_micros"]
        for row in rows
        if row["revenue_micros"]
    } == revenue
    hot_export = _cli_json(env, "export", "impressions", *span, "--format", "jsonl")
    impressions = [orjson.loads(line) for line in hot_export.splitlines()]
    assert len(impressions) == sum(impressions for _r, _f, impressions in counts.values())
    assert sum(row["revenue_micros"] or 0 for row in impressions) == sum(revenue.values())

    with connect(settings.database_url, autocommit=True) as conn:
        store = FileColdStore(cold)
        for day in days:
            for table in PARTITIONED_TABLES:
                tier_day(conn, store, table, day)
        assert conn.execute("SELECT count(*) FROM archive_records").fetchone() == (0,)
    assert (
        orjson.loads(_cli_json(env, "report", *span, "--by", "app,source", "--json"))["rows"]
        == rows
    )
    assert _cli_json(env, "export", "impressions", *span, "--format", "jsonl") == hot_export


@pytest.mark.parametrize("members", [1, 2], ids=["one worker", "two members"])
def test_every_opportunity_closes_into_one_archive_record_equal_to_the_rules(
    settings: Settings, child_env: dict[str, str], members: int, tmp_path: Path
) -> None:
    app_key = new_app_key()
    seed_app(settings.database_url, "demo", demo_config(CLOSURE_WINDOW_MS, GRACE_MS), app_key)
    env = dict(child_env)
    env.update(
        {
            "MEDIATION_ALLOWED_LATENESS_MS": str(LATENESS_MS),
            "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS": str(CLOSURE_WINDOW_MS),
            "MEDIATION_DEFAULT_GRACE_MS": str(GRACE_MS),
        }
    )
    port = free_port()
    # Each member serves /metrics on a port of its own (given explicitly:
    # ``--metrics-port P`` would serve member i on P + i).
    metrics_ports = [free_port() for _ in range(members)]
    logs = settings.data_dir / "logs"
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(
                running(
                    f"worker-{index}",
                    mediation_command(
                        "worker",
                        "--partitions",
                        ",".join(str(p) for p in range(index, settings.kafka_partitions, members)),
                        "--metrics-port",
                        str(metrics_ports[index]),
                    ),
                    env,
                    logs / f"worker-{index}.log",
                    first_signal=signal.SIGINT,
                )
            )
            for index in range(members)
        ]
        gateway = stack.enter_context(
            running(
                "gateway", mediation_command("api", "--port", str(port)), env, logs / "gateway.log"
            )
        )
        for index, worker in enumerate(workers):
            worker.wait_http(f"http://127.0.0.1:{metrics_ports[index]}/metrics", timeout_s=60)
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        report = asyncio.run(
            run_simulation(
                SimulationConfig(
                    base_url=f"http://127.0.0.1:{port}",
                    app_key=app_key,
                    rate_rps=20,
                    duration_s=4,
                    seed=11,
                    resend_share=0.3,
                    split_share=0.5,
                    malformed_share=0.2,
                    conflict_share=0.1,
                    orphan_share=0.1,
                    invalid_body_count=1,
                )
            )
        )
        raw_partition, raw_offset = _produce_raw(settings, b"{this is not json")

        assert report.requests_ok == report.requests_sent > 0
        assert report.events_accepted > 0 and sum(report.events_rejected.values()) > 0
        assert report.resent_batches > 0
        assert report.invalid_bodies == {"400": 1}

        with connect(settings.database_url, autocommit=True) as conn:
            closed = _wait(
                lambda: count_archived(conn, report) == len(report.expectations), timeout_s=90
            )
            for worker in workers:
                assert worker.alive(), worker.tail()
            tails = "\n".join(worker.tail() for worker in workers)
            assert closed, f"not every opportunity closed; worker logs:\n{tails}"
            _wait(lambda: reconcile(conn, report).ok, timeout_s=30)
            result = reconcile(conn, report)
            assert result.archived == result.opportunities
            assert result.recompute_mismatches == []
            assert result.expectation_mismatches == []
            assert result.missing_event_ids == []
            assert result.orphans_stored == result.orphans_expected

            one_archive_each = conn.execute(
                "SELECT count(*), count(DISTINCT opportunity_key) FROM archive_records"
            ).fetchone()
            assert one_archive_each is not None
            assert one_archive_each[0] == one_archive_each[1] == len(report.expectations)

            letter = conn.execute(
                "SELECT reason, source_topic, source_partition, source_offset, payload "
                "FROM dead_letters WHERE source_offset IS NOT NULL"
            ).fetchone()
            assert letter == (
                "invalid_json",
                settings.topics.events,
                raw_partition,
                raw_offset,
                b"{this is not json",
            )
            conflicts = conn.execute(
                "SELECT count(*) FROM dead_letters WHERE reason = 'duplicate_conflict'"
            ).fetchone()
            assert conflicts is not None and conflicts[0] == report.conflicts_sent

            late = conn.execute("SELECT count(*) FROM event_records WHERE late").fetchone()
            assert late == (0,)  # live traffic: nothing closed before its events were read

            scraped = [
                httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
                for metrics_port in metrics_ports
            ]

    def total(name: str) -> float:
        return sum(
            float(line.split()[-1])
            for text in scraped
            for line in text.splitlines()
            if line.startswith(f"{name} ")
        )

    assert total("mediation_worker_archives_total") >= len(report.expectations)
    assert total('mediation_worker_dead_letters_total{reason="invalid_json"}') == 1
    assert total("mediation_worker_partitions_owned") == settings.kafka_partitions
    assert all("mediation_worker_event_time_lag_seconds" in text for text in scraped)

    letters = _read_topic(settings, settings.topics.deadletter)
    reasons = sorted(str(letter["reason"]) for letter in letters)
    assert "invalid_json" in reasons
    assert reasons.count("duplicate_conflict") == report.conflicts_sent

    if members == 1:
        _report_and_export_equal_the_archives(settings, child_env, tmp_path / "cold")
