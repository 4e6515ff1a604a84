"""The main job: the whole pipeline on local defaults with a simulated SDK.

Starts (or reuses) Postgres, Redis and the broker, migrates, seeds a demo
app whose config uses a short closure window, starts the gateway and one
dataflow worker as child processes, runs the simulated SDK, waits until
every opportunity closed, prints the summary and reconciliation, and stops
everything it started (by pid). Exit status 0 only when reconciliation
passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from mediation.settings import Settings
from mediation.sim import devstack
from mediation.sim.processes import free_port, mediation_command, running
from mediation.sim.seed import demo_config, new_app_key, seed_app
from mediation.sim.simulate import (
    SimulationConfig,
    SimulationReport,
    run_simulation,
    run_simulation_processes,
)
from mediation.sim.summary import render_summary
from mediation.sim.verify import Reconciliation, count_archived, reconcile
from mediation.text_table import render_table
from storage.db import connect
from storage.migrate import migrate
from storage.partitions import days_around, ensure_partitions

__all__ = [
    "DemoOptions",
    "PipelineRun",
    "default_tombstone_ttl_ms",
    "run_demo",
    "run_pipeline",
    "with_run_topics",
]

# Given the gateway's and the worker's /metrics URLs, a context that runs
# around the simulated traffic (the peak simulation samples its time series
# in it).
TrafficMonitor = Callable[[str, str], AbstractContextManager[object]]


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 20.0
    rate_rps: float = 50.0
    closure_window_ms: int = 10_000
    grace_ms: int = 2_000
    allowed_lateness_ms: int = 1_000
    seed: int = 7
    keep_services: bool = False
    rate_schedule: tuple[tuple[float, float], ...] = ()
    simulator_processes: int = 1
    monitor: TrafficMonitor | None = field(default=None, compare=False)
    # How long the worker remembers a closed opportunity; default six windows.
    tombstone_ttl_ms: int | None = None


@dataclass
class PipelineRun:
    """What a run of the whole pipeline under simulated traffic gave."""

    report: SimulationReport
    reconciliation: Reconciliation
    summary: str


def _say(message: str) -> None:
    print(message, flush=True)


def _progress(report: SimulationReport, elapsed_s: float) -> None:
    if report.requests_sent % 25 == 0:
        sys.stderr.write(
            f"\r  simulating: {elapsed_s:5.1f}s  requests {report.requests_sent:6d}  "
            f"events accepted {report.events_accepted:6d}  "
            f"rejected {sum(report.events_rejected.values()):4d}"
        )
        sys.stderr.flush()


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(1.0)
    _say(f"  gave up waiting for {what} after {timeout_s:.0f}s")
    return False


def default_tombstone_ttl_ms(closure_window_ms: int) -> int:
    """How long a run's worker remembers closed opportunities unless told: six windows."""
    return max(60_000, 6 * closure_window_ms)


def with_run_topics(settings: Settings, label: str) -> Settings:
    """Settings naming topics of this run only (``<prefix><label>-<time>.``).

    The worker starts without recovery state, so on shared topics it would
    read every earlier run's messages again before this run's.
    """
    started = dt.datetime.now(dt.UTC)
    return dataclasses.replace(
        settings, topic_prefix=f"{settings.topic_prefix}{label}-{started:%Y%m%dT%H%M%S}."
    )


def run_demo(settings: Settings, options: DemoOptions) -> int:
    run = run_pipeline(with_run_topics(settings, "demo"), options)
    for problem in (
        run.reconciliation.recompute_mismatches
        + run.reconciliation.expectation_mismatches
        + run.reconciliation.missing_event_ids
    )[:10]:
        _say(f"  mismatch: {problem}")
    return 0 if run.reconciliation.ok else 1


def run_pipeline(settings: Settings, options: DemoOptions) -> PipelineRun:
    """Services, schema, demo app, gateway and worker, traffic, closure and reconciliation."""
    _say("== 1. local services")
    statuses = devstack.up(settings, ("postgres", "redis", "kafka"))
    _say(
        render_table(
            "",
            ["service", "address", "state", "detail"],
            [[s.name, s.address, s.state, s.detail] for s in statuses],
        )
    )
    started = [s.name for s in statuses if s.state == "started"]
    try:
        return _run(settings, options)
    finally:
        if started and not options.keep_services:
            stopped = devstack.down(settings, only=tuple(started))
            _say(f"stopped services started by the demo: {', '.join(s.name for s in stopped)}")


def _run(settings: Settings, options: DemoOptions) -> PipelineRun:
    _say("\n== 2. schema, partitions and demo app")
    applied = migrate(settings.database_url)
    with connect(settings.database_url) as conn:
        ensure_partitions(conn, days_around(dt.datetime.now(dt.UTC).date(), 1, 2))
    app_key = new_app_key()
    seeded = seed_app(
        settings.database_url,
        "demo",
        demo_config(options.closure_window_ms, options.grace_ms),
        app_key,
    )
    _say(
        f"migrations applied now: {applied or 'none (up to date)'}; app 'demo' config "
        f"v{seeded.config_version} (closure window {options.closure_window_ms} ms, "
        f"grace {options.grace_ms} ms)"
    )

    port, metrics_port = free_port(), free_port()
    worker_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    env = settings.child_env()  # the children use this run's database, topics, ...
    env.update(
        {
            "MEDIATION_ALLOWED_LATENESS_MS": str(options.allowed_lateness_ms),
            "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS": str(options.closure_window_ms),
            "MEDIATION_DEFAULT_GRACE_MS": str(options.grace_ms),
            "MEDIATION_TOMBSTONE_TTL_MS": str(
                options.tombstone_ttl_ms or default_tombstone_ttl_ms(options.closure_window_ms)
            ),
        }
    )
    logs = settings.data_dir / "logs"
    base_url = f"http://127.0.0.1:{port}"
    _say(f"\n== 3. gateway on {base_url} and one dataflow worker (logs in {logs})")
    with (
        running(
            "gateway",
            mediation_command("api", "--host", "127.0.0.1", "--port", str(port)),
            env,
            logs / "demo-gateway.log",
        ) as gateway,
        running(
            "worker",
            mediation_command("worker", "--metrics-port", str(metrics_port)),
            env,
            logs / "demo-worker.log",
            first_signal=signal.SIGINT,
        ) as worker,
    ):
        gateway.wait_http(f"{base_url}/readyz", timeout_s=60)
        _say(f"gateway ready (pid {gateway.pid}); worker pid {worker.pid}")

        _say(f"\n== 4. simulated SDK: {_rates(options)} for {options.duration_s:g}s")

        config = SimulationConfig(
            base_url=base_url,
            app_key=app_key,
            rate_rps=options.rate_rps,
            duration_s=options.duration_s,
            seed=options.seed,
            rate_schedule=options.rate_schedule,
            closure_window_ms=options.closure_window_ms,
            grace_ms=options.grace_ms,
        )
        monitor = (
            options.monitor(f"{base_url}/metrics", worker_metrics)
            if options.monitor
            else contextlib.nullcontext()
        )
        with monitor:
            if options.simulator_processes > 1:
                report = run_simulation_processes(config, options.simulator_processes)
            else:
                report = asyncio.run(run_simulation(config, progress=_progress))
        sys.stderr.write("\n")

        wait_s = (options.closure_window_ms + options.allowed_lateness_ms) / 1000 + 60
        _say(f"\n== 5. waiting for every opportunity to close (up to {wait_s:.0f}s)")
        with connect(settings.database_url) as conn:
            conn.autocommit = True

            def all_closed() -> bool:
                if not worker.alive():
                    raise RuntimeError(f"worker exited; see {worker.log_path}\n{worker.tail()}")
                done = count_archived(conn, report)
                sys.stderr.write(f"\r  archived {done} / {len(report.expectations)}")
                return done >= len(report.expectations)

            _wait_for(all_closed, wait_s, "archive records")
            sys.stderr.write("\n")
            # Orphans are written when a default window would have closed.
            time.sleep((options.allowed_lateness_ms + 1500) / 1000)
            reconciliation = reconcile(conn, report)
            if reconciliation.orphans_stored < reconciliation.orphans_expected:
                _wait_for(
                    lambda: (
                        reconcile(conn, report).orphans_stored >= reconciliation.orphans_expected
                    ),
                    30,
                    "orphan events",
                )
                reconciliation = reconcile(conn, report)
            _say("\n== 6. summary (from Postgres)\n")
            summary = render_summary(conn, report, reconciliation)
            _say(summary)
            today = dt.datetime.now(dt.UTC).date()
            _say(
                f"\nThe business report of the day (every run of it; docs/reporting.md): "
                f"mediation report --from {today} --to {today} --by app,source"
            )
    return PipelineRun(report, reconciliation, summary)


def _rates(options: DemoOptions) -> str:
    if not options.rate_schedule:
        return f"{options.rate_rps:g} req/s"
    return ", ".join(f"{rps:g} req/s from {at:g}s" for at, rps in options.rate_schedule)
