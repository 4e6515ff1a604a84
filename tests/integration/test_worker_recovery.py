"""Crash drills: a worker killed with SIGKILL and restarted from its recovery store.

Bytewax's sinks are at-least-once; the worker's effects in Postgres must be
exactly once anyway. Each drill writes a fixed set of opportunities and
events to Kafka, runs ``mediation worker -r DIR -s 1`` and kills it:

- ``before_write:N``: just before its N-th Postgres batch;
- ``after_write:N``: just after the N-th batch committed, before a snapshot
  can record the progress (so the restart replays what was already written);
- ``external``: SIGKILL from outside at two moments, wherever the worker is
  (reading, writing, or writing a snapshot every second).

The restarted worker finishes the job, and Postgres must then hold exactly
one opportunity row, each distinct event once, and one archive record per
opportunity equal to what the pure rules compute from the inputs: none
lost, none doubled, nothing changed by the replay, and no dead letters.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from builders import opportunity
from confluent_kafka import Producer
from psycopg import sql

from mediation.processes import ChildProcess, mediation_command
from mediation.rules.closure import close_opportunity
from mediation.rules.model import ArchiveRecord, Event, Opportunity
from mediation.rules.ulid import encode_ulid
from mediation.settings import Settings
from mediation.wire import encode_event, encode_opportunity
from replay.hot import load_archives

pytestmark = pytest.mark.integration

OPPORTUNITIES = 240
SPREAD_MS = 25  # opportunity times 25 ms apart: closures (and archive batches) spread over 6 s
WINDOW_MS, GRACE_MS, LATENESS_MS = 1_500, 500, 500


def _dataset(now_ms: int, seed: int) -> tuple[list[Opportunity], list[Event]]:
    rng = random.Random(seed)
    opportunities, events = [], []
    for i in range(OPPORTUNITIES):
        ts = now_ms + i * SPREAD_MS
        key = encode_ulid(ts, rng.randbytes(10))
        opportunities.append(
            replace(
                opportunity(key, ts_ms=ts, client_ts_ms=ts, expires_at_ms=ts + 300_000),
                closure_window_ms=WINDOW_MS,
                grace_ms=GRACE_MS,
            )
        )
        events.append(_event(key, ts, 0, "loaded", 100))
        if i % 3:
            events.append(
                _event(key, ts, 1, "impression", 200, revenue_micros=1_000 + i, currency="USD")
            )
        if i % 3 == 2:
            events.append(_event(key, ts, 2, "click", 300))
    return opportunities, events


def _event(key: str, ts: int, n: int, kind: str, at: int, **extra: object) -> Event:
    return Event(
        event_id=f"{key}-{n}",
        app_id="app",
        opportunity_key=key,
        type=kind,
        ts_ms=ts + at,
        server_ts_ms=ts + at,
        received_at_ms=ts + at,
        source_id="net_a",
        **extra,  # type: ignore[arg-type]
    )


def _produce(settings: Settings, opportunities: list[Opportunity], events: list[Event]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all"})
    by_key: dict[str, list[Event]] = {}
    for e in events:
        by_key.setdefault(e.opportunity_key, []).append(e)
    for opp in opportunities:
        key = opp.opportunity_key.encode()
        producer.produce(settings.topics.opportunities, encode_opportunity(opp), key)
        for e in by_key[opp.opportunity_key]:
            producer.produce(settings.topics.events, encode_event(e), key)
            # A resend: the dataflow must absorb it on every run and replay.
            if e.event_id.endswith("-0"):
                producer.produce(settings.topics.events, encode_event(e), key)
        producer.poll(0)
    assert producer.flush(15) == 0


def _worker(env: dict[str, str], recovery: Path, log: Path, crash_at: str = "") -> ChildProcess:
    child_env = dict(env)
    child_env.pop("MEDIATION_CRASH_AT", None)
    if crash_at:
        child_env["MEDIATION_CRASH_AT"] = crash_at
    argv = mediation_command("worker", "-r", str(recovery), "-s", "1", "--metrics-port", "0")
    return ChildProcess("worker", argv, child_env, log)


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("crash", ["before_write:2", "after_write:1", "after_write:3", "external"])
def test_worker_killed_and_restarted_leaves_postgres_exactly_as_one_clean_run(
    settings: Settings, child_env: dict[str, str], crash: str
) -> None:
    env = dict(child_env)
    env.update(
        {
            "MEDIATION_ALLOWED_LATENESS_MS": str(LATENESS_MS),
            "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS": str(WINDOW_MS),
            "MEDIATION_DEFAULT_GRACE_MS": str(GRACE_MS),
        }
    )
    recovery = settings.data_dir / "recovery"
    logs = settings.data_dir / "logs"
    opportunities, events = _dataset(int(time.time() * 1000), seed=len(crash))
    expected: dict[str, ArchiveRecord] = {}
    for opp in opportunities:
        mine = [e for e in events if e.opportunity_key == opp.opportunity_key]
        expected[opp.opportunity_key] = close_opportunity(opp, mine).archive
    _produce(settings, opportunities, events)

    crashes = 0
    if crash == "external":
        for delay_s in (4.0, 2.0):  # once mid-run, once soon after the restart
            victim = _worker(env, recovery, logs / f"worker-{crashes}.log")
            time.sleep(delay_s)
            assert victim.alive(), victim.tail()
            victim.stop(signal.SIGKILL)
            crashes += 1
    else:
        victim = _worker(env, recovery, logs / "worker-crash.log", crash_at=crash)
        try:
            victim.proc.wait(60)
        finally:
            returncode = victim.stop(signal.SIGKILL)
        assert returncode == -signal.SIGKILL, f"no crash at {crash}:\n{victim.tail()}"
        crashes += 1

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        at_crash = (_count(conn, "event_records"), _count(conn, "archive_records"))
    print(f"{crash}: stored at the crash: {at_crash[0]} events, {at_crash[1]} archives")
    # The drill is worth something only if the restart had work left to do.
    assert at_crash[1] < OPPORTUNITIES

    finisher = _worker(env, recovery, logs / "worker-final.log")
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and _count(conn, "archive_records") < OPPORTUNITIES:
                assert finisher.alive(), finisher.tail()
                time.sleep(0.5)
            time.sleep(2)  # anything still to come (a double) would land by now
            assert _count(conn, "archive_records") == OPPORTUNITIES, finisher.tail()
            assert _count(conn, "opportunity_records") == OPPORTUNITIES
            assert _count(conn, "delivery_records") == OPPORTUNITIES
            assert _count(conn, "event_records") == len(events)
            assert _count(conn, "dead_letters") == 0
            stored = load_archives(conn, expected)
    finally:
        finisher.stop(signal.SIGINT)
    assert crashes >= 1
    assert stored == expected
    assert os.listdir(recovery)  # the recovery store was used
