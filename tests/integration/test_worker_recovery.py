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
import signal
import socket
import time
from pathlib import Path

import pytest
from worker_inputs import WORKER_ENV, assert_stored_exactly, count_rows, dataset, produce

from dataflows.stopping import STOP_GRACE_S
from mediation.settings import Settings
from mediation.sim.processes import ChildProcess, free_port, mediation_command
from storage.db import connect

pytestmark = pytest.mark.integration

OPPORTUNITIES = 240
SPREAD_MS = 25  # opportunity times 25 ms apart: closures (and archive batches) spread over 6 s


def _worker(env: dict[str, str], recovery: Path, log: Path, crash_at: str = "") -> ChildProcess:
    child_env = dict(env)
    child_env.pop("MEDIATION_CRASH_AT", None)
    if crash_at:
        child_env["MEDIATION_CRASH_AT"] = crash_at
    argv = mediation_command("worker", "-r", str(recovery), "-s", "1", "--metrics-port", "0")
    return ChildProcess("worker", argv, child_env, log)


@pytest.mark.parametrize("crash", ["before_write:2", "after_write:1", "after_write:3", "external"])
def test_worker_killed_and_restarted_leaves_postgres_exactly_as_one_clean_run(
    settings: Settings, child_env: dict[str, str], crash: str
) -> None:
    env = {**child_env, **WORKER_ENV}
    recovery = settings.data_dir / "recovery"
    logs = settings.data_dir / "logs"
    data = dataset(int(time.time() * 1000), OPPORTUNITIES, SPREAD_MS, seed=len(crash))
    produce(settings, data)

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

    with connect(settings.database_url, autocommit=True) as conn:
        at_crash = (count_rows(conn, "event_records"), count_rows(conn, "archive_records"))
    print(f"{crash}: stored at the crash: {at_crash[0]} events, {at_crash[1]} archives")
    # The drill is worth something only if the restart had work left to do.
    assert at_crash[1] < OPPORTUNITIES

    finisher = _worker(env, recovery, logs / "worker-final.log")
    try:
        with connect(settings.database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 90
            while (
                time.monotonic() < deadline and count_rows(conn, "archive_records") < OPPORTUNITIES
            ):
                assert finisher.alive(), finisher.tail()
                time.sleep(0.5)
            time.sleep(2)  # anything still to come (a double) would land by now
            assert_stored_exactly(conn, data)
    finally:
        finisher.stop(signal.SIGINT)
    assert crashes >= 1
    assert os.listdir(recovery)  # the recovery store was used


# -- clean stops -------------------------------------------------------------

SIGNALS = pytest.mark.parametrize(
    "stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)


def _served_worker(env: dict[str, str], recovery: Path, log: Path) -> tuple[ChildProcess, int]:
    port = free_port()
    argv = mediation_command("worker", "-r", str(recovery), "-s", "1", "--metrics-port", str(port))
    worker = ChildProcess("worker", argv, env, log)
    worker.wait_http(f"http://127.0.0.1:{port}/healthz")
    return worker, port


def _stop_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "worker stopped on" in line]


@SIGNALS
def test_a_stop_signal_finishes_the_epoch_and_a_restart_loses_and_doubles_nothing(
    settings: Settings, child_env: dict[str, str], stop_signal: signal.Signals
) -> None:
    env = {**child_env, **WORKER_ENV}
    recovery = settings.data_dir / "recovery"
    logs = settings.data_dir / "logs"
    data = dataset(int(time.time() * 1000), OPPORTUNITIES, SPREAD_MS, seed=stop_signal)
    produce(settings, data)

    first, _port = _served_worker(env, recovery, logs / "worker-stopped.log")
    with connect(settings.database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and count_rows(conn, "archive_records") == 0:
            assert first.alive(), first.tail()
            time.sleep(0.2)
        returncode = first.stop(stop_signal, timeout_s=STOP_GRACE_S)
        at_stop = count_rows(conn, "archive_records")
    log_text = (logs / "worker-stopped.log").read_text()
    assert returncode == 0, log_text[-3000:]
    assert len(_stop_lines(logs / "worker-stopped.log")) == 1, log_text[-3000:]
    assert stop_signal.name in _stop_lines(logs / "worker-stopped.log")[0]
    assert "panic" not in log_text and "Traceback" not in log_text, log_text[-3000:]
    assert 0 < at_stop < OPPORTUNITIES  # the restart has work left

    second, _port = _served_worker(env, recovery, logs / "worker-final.log")
    try:
        with connect(settings.database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 90
            while (
                time.monotonic() < deadline and count_rows(conn, "archive_records") < OPPORTUNITIES
            ):
                assert second.alive(), second.tail()
                time.sleep(0.5)
            time.sleep(2)  # anything still to come (a double) would land by now
            assert_stored_exactly(conn, data)
    finally:
        assert second.stop(signal.SIGTERM, timeout_s=STOP_GRACE_S) == 0, second.tail()


@SIGNALS
def test_an_idle_worker_stops_on_a_signal(
    settings: Settings, child_env: dict[str, str], stop_signal: signal.Signals
) -> None:
    log = settings.data_dir / "logs" / "worker-idle.log"
    worker, _port = _served_worker({**child_env, **WORKER_ENV}, settings.data_dir / "r", log)
    time.sleep(1)  # a moment of nothing to read
    assert worker.stop(stop_signal, timeout_s=STOP_GRACE_S) == 0, worker.tail()
    assert len(_stop_lines(log)) == 1, worker.tail()


def test_a_busy_metrics_port_stops_the_worker_at_start_with_one_line(
    settings: Settings, child_env: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = mediation_command("worker", "--metrics-port", str(port))
        log = settings.data_dir / "worker-busy-port.log"
        worker = ChildProcess("worker", argv, child_env, log)
        try:
            returncode = worker.proc.wait(60)
        finally:
            worker.stop(signal.SIGKILL)
    output = [line for line in log.read_text().splitlines() if line.strip()]
    assert returncode == 1, output
    assert len([line for line in output if str(port) in line]) == 1, output
    assert output[-1].startswith("mediation worker: worker metrics port"), output
    assert "Traceback" not in log.read_text()
