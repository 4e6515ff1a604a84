"""Postgres away mid-run: the worker holds, retries, and resumes by itself.

Fault: the local PostgreSQL cluster is stopped (``pg_ctlcluster ... stop -m
fast``) while the worker is writing archive records, and started again 15 s
later; the test always starts it again, whatever happens.
Traffic: 120 opportunities with their events before the outage, 120 more
written to Kafka during it (a backlog the worker reads after).
Invariant: the worker never exits; afterwards Postgres holds every
opportunity, delivery and distinct event exactly once and one archive
record per opportunity equal to the rules, with no dead letters (an outage
is not the records' fault) and no late events (closing held while reading
did: the backlog's events were not left behind their opportunities).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from worker_inputs import WORKER_ENV, Dataset, assert_stored_exactly, count_rows, dataset, produce

from mediation.settings import Settings
from mediation.sim.devstack import wait_port
from mediation.sim.processes import mediation_command, running
from storage.db import DatabaseUnavailableError, connect

pytestmark = pytest.mark.integration

PER_PHASE = 120
OUTAGE_S = 15  # longer than the 10 s after which a quiet partition used to count as drained


def _cluster() -> list[str]:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        pytest.fail("this test stops and starts the local PostgreSQL with pg_ctlcluster")
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def _wait_for(conn_url: str, table: str, count: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        try:
            with connect(conn_url, autocommit=True, timeout_s=2) as conn:
                seen = count_rows(conn, table)
        except (psycopg.OperationalError, DatabaseUnavailableError):
            seen = 0
        if seen >= count:
            break
        time.sleep(0.5)
    return seen


def test_worker_survives_a_postgres_restart_and_loses_nothing(
    settings: Settings, child_env: dict[str, str]
) -> None:
    cluster = _cluster()
    before = dataset(int(time.time() * 1000), PER_PHASE, 25, seed=1)
    produce(settings, before)
    env = {**child_env, **WORKER_ENV}
    logs = settings.data_dir / "logs"
    with running(
        "worker", mediation_command("worker", "--metrics-port", "0"), env, logs / "worker.log"
    ) as worker:
        # Stop the database while archive records are still being written.
        assert _wait_for(settings.database_url, "archive_records", 20, 60) >= 20, worker.tail()
        subprocess.run([*cluster, "stop", "-m", "fast"], check=True, capture_output=True)
        try:
            during = dataset(int(time.time() * 1000), PER_PHASE, 25, seed=2)
            produce(settings, during)
            time.sleep(OUTAGE_S)
            assert worker.alive(), worker.tail()
        finally:
            subprocess.run([*cluster, "start"], check=True, capture_output=True)
            wait_port("Postgres", "127.0.0.1", 5432, 30, None)

        everything = Dataset(
            before.opportunities + during.opportunities, before.events + during.events
        )
        archived = _wait_for(settings.database_url, "archive_records", 2 * PER_PHASE, 120)
        assert archived == 2 * PER_PHASE, worker.tail()
        assert worker.alive(), worker.tail()
        time.sleep(2)  # anything still to come (a double) would land by now
        with connect(settings.database_url, autocommit=True) as conn:
            assert_stored_exactly(conn, everything)
            late = conn.execute("SELECT count(*) FROM event_records WHERE late").fetchone()
            assert late == (0,)
        log = (logs / "worker.log").read_text(errors="replace")
        assert "retrying" in log  # the sink did meet the outage
