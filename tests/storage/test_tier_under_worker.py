"""A day tiered under a running worker, then a very late event for it (issue: the worker died).

The gateway accepts event keys up to 35 days old and ``mediation tier``
drops days older than 30: an event 32 days old arrives, the day is
tiered, another event for that day arrives. The worker must stay up, the
row land in Postgres (a partition created again), and the next ``mediation
tier`` merge the day with its cold copy and tier it again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from worker_inputs import WORKER_ENV

from mediation.cli import main
from mediation.rules.model import Event
from mediation.rules.ulid import encode_ulid, ulid_day
from mediation.settings import Settings
from mediation.sim.processes import ChildProcess, mediation_command
from mediation.topics import producer_config
from mediation.wire import encode_event
from storage.cold import open_cold_store
from storage.db import connect
from storage.tier_job import partition_days
from storage.tiering import read_manifest

pytestmark = pytest.mark.integration


def _send(settings: Settings, key: str, event_id: str, ts_ms: int) -> None:
    event = Event(
        event_id=event_id,
        app_id="app",
        opportunity_key=key,
        type="loaded",
        ts_ms=ts_ms,
        server_ts_ms=ts_ms,
        received_at_ms=int(time.time() * 1000),
        source_id="net_a",
    )
    producer = Producer(producer_config(settings.kafka_bootstrap_servers, {"acks": "all"}))
    producer.produce(settings.topics.events, encode_event(event), key.encode())
    assert producer.flush(15) == 0


def _wait_for_event(settings: Settings, worker: ChildProcess, event_id: str) -> None:
    deadline = time.monotonic() + 90
    with connect(settings.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            assert worker.alive(), worker.tail()
            found = conn.execute(
                "SELECT count(*) FROM event_records WHERE event_id = %s", (event_id,)
            ).fetchone()
            if found == (1,):
                return
            time.sleep(0.3)
    raise AssertionError(f"{event_id} never stored:\n{worker.tail()}")


def test_a_late_event_for_a_day_tiered_under_a_running_worker_is_stored(
    settings: Settings,
    child_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for name, value in child_env.items():
        if name.isupper() and value != os.environ.get(name):
            monkeypatch.setenv(name, value)  # `mediation tier` in this process: the test's services
    monkeypatch.setenv("COLD_STORAGE_URL", (tmp_path / "cold").as_uri())
    old_ms = int(time.time() * 1000) - 32 * 86_400_000
    # One key for both: the sink routes by key, so the same writer, which
    # created the day's partitions, meets the day tiered.
    key = encode_ulid(old_ms, os.urandom(10))
    day = ulid_day(key)
    argv = mediation_command("worker", "-s", "1", "--metrics-port", "0")
    worker = ChildProcess("worker", argv, {**child_env, **WORKER_ENV}, settings.data_dir / "w.log")
    try:
        _send(settings, key, "before-tiering", old_ms)
        _wait_for_event(settings, worker, "before-tiering")  # the worker made the day's partitions

        assert main(["tier"]) == 0
        assert "tiered" in capsys.readouterr().out
        with connect(settings.database_url, autocommit=True) as conn:
            assert day not in partition_days(conn, "event_records")

        _send(settings, key, "after-tiering", old_ms + 1)
        _wait_for_event(settings, worker, "after-tiering")
        assert worker.alive(), worker.tail()

        assert main(["tier"]) == 0
        assert "tiered (merged with its cold copy)" in capsys.readouterr().out
    finally:
        worker.stop(signal.SIGINT)
    store = open_cold_store((tmp_path / "cold").as_uri())
    manifest = read_manifest(store, "event_records", day)
    assert manifest is not None and manifest.rows == 2  # both events, in cold storage
    with connect(settings.database_url, autocommit=True) as conn:
        assert day not in partition_days(conn, "event_records")
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
