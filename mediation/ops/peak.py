"""``mediation simulate --profile peak|10x|soak``: the whole stack under load, reported.

Runs the pipeline as the demo does (services, schema, demo app, gateway
and worker as child processes) with the simulated SDK following the
profile's rate schedule (in several processes: one Python HTTP client
cannot offer the seed's peak), samples a time series every second from the
gateway's and the worker's /metrics (offered and answered request rate,
events ACKed, the gateway's sync p95, 5xx answers, the worker's event-time
lag, both processes' resident memory), waits until every opportunity
closed, reconciles Postgres against what the simulator was told, and writes
a report (``report.md``, PNG charts, ``summary.json``) under a results
folder. ``mediation gate``
reads the newest ``summary.json``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

from mediation.ops.profiles import GRACE_MS, PROFILES, Profile, Sample
from mediation.ops.status import read_gateway, read_worker
from mediation.rules.triggers import histogram_quantile
from mediation.settings import Settings
from mediation.sim.demo import (
    DemoOptions,
    PipelineRun,
    run_pipeline,
    with_run_topics,
)
from mediation.sim.simulate import scheduled_rate

__all__ = ["PROFILES", "Profile", "Sample", "Sampler", "run_profile"]


class Sampler:
    """Reads the gateway's and the worker's /metrics every second while traffic runs."""

    def __init__(
        self,
        schedule: tuple[tuple[float, float], ...],
        duration_s: float,
        interval_s: float = 1.0,
    ):
        self.schedule, self.duration_s, self.interval_s = schedule, duration_s, interval_s
        self.samples: list[Sample] = []
        self.gateway_buckets: dict[float, float] = {}  # over the whole run
        self._stop = threading.Event()
        self._urls = ("", "")
        self._thread: threading.Thread | None = None

    def __call__(self, gateway_metrics: str, worker_metrics: str) -> Sampler:
        self._urls = (gateway_metrics, worker_metrics)
        return self

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _offered(self, elapsed_s: float) -> float:
        """The schedule's rate; 0 once the traffic is over (requests still queued drain)."""
        if elapsed_s >= self.duration_s:
            return 0.0
        return scheduled_rate(self.schedule, elapsed_s, 0.0)

    def _run(self) -> None:
        gateway_url, worker_url = self._urls
        started = time.monotonic()
        first = previous = read_gateway(gateway_url, timeout_s=0.5)
        previous_at = started
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            current = read_gateway(gateway_url, timeout_s=0.5)
            if current.error or previous.error:
                previous, previous_at = current, now
                continue
            span = now - previous_at
            window = {
                le: n - previous.sync_buckets.get(le, 0.0) for le, n in current.sync_buckets.items()
            }
            p95 = histogram_quantile(0.95, sorted(window.items()))
            worker = read_worker(worker_url, timeout_s=0.5)
            self.samples.append(
                Sample(
                    at_s=round(now - started, 2),
                    offered_rps=self._offered(now - started),
                    requests_per_s=(current.sync_answered - previous.sync_answered) / span,
                    events_per_s=(current.events_accepted - previous.events_accepted) / span,
                    gateway_p95_ms=None if p95 is None else p95 * 1000,
                    server_errors=int(current.server_errors - previous.server_errors),
                    worker_lag_s=worker.values.get("event-time lag s"),
                    gateway_rss_mib=_mib(current.resident_bytes),
                    worker_rss_mib=_mib(worker.resident_bytes),
                )
            )
            if not first.error:
                self.gateway_buckets = {
                    le: n - first.sync_buckets.get(le, 0.0)
                    for le, n in current.sync_buckets.items()
                }
            previous, previous_at = current, now


def _mib(size: float | None) -> float | None:
    return None if size is None else round(size / 2**20, 2)


def run_profile(
    settings: Settings,
    profile: Profile,
    duration_s: float | None,
    results: Path | None,
    simulator_processes: int = 2,
) -> tuple[Path, bool]:
    """Run the profile and write its report; the report's folder and whether it passed."""
    from mediation.ops.peak_report import write_report  # matplotlib is imported only for reports

    duration = duration_s or profile.duration_s
    schedule = profile.schedule(duration)
    sampler = Sampler(schedule, duration)
    started = dt.datetime.now(dt.UTC)
    settings = with_run_topics(settings, profile.name)
    clock = time.monotonic()
    run: PipelineRun = run_pipeline(
        settings,
        DemoOptions(
            duration_s=duration,
            rate_rps=profile.base_rps,
            closure_window_ms=profile.closure_window_ms,
            grace_ms=GRACE_MS,
            tombstone_ttl_ms=profile.tombstone_ttl_ms,
            rate_schedule=schedule,
            simulator_processes=simulator_processes,
            monitor=sampler,
        ),
    )
    folder = results or settings.data_dir / "results" / f"{started:%Y%m%dT%H%M%SZ}-{profile.name}"
    passed = write_report(folder, profile, duration, sampler.samples, run, started,
                          time.monotonic() - clock, sampler.gateway_buckets)  # fmt: skip
    return folder, passed
