"""``mediation simulate --profile peak|10x``: the whole stack under the seed's peak, reported.

Runs the pipeline as the demo does (services, schema, demo app, gateway
and worker as child processes) with the simulated SDK following the
profile's rate schedule, samples a time series every second (offered and
achieved request rate, events accepted, request p95 as the SDK sees it,
errors, the worker's event-time lag), waits until every opportunity
closed, reconciles Postgres against what the simulator was told, and
writes a report (``report.md``, PNG charts, ``summary.json``) under a
results folder. ``mediation gate`` reads the newest ``summary.json``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from .demo import DemoOptions, PipelineRun, run_pipeline
from .settings import Settings
from .simulate import SimulationReport
from .status import read_worker
from .summary import percentile

__all__ = ["PROFILES", "Profile", "Sample", "Sampler", "run_profile"]

EVENTS_PER_REQUEST = 1.8  # the seed's traffic model


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    base_rps: float
    burst_rps: float
    duration_s: float = 120.0

    def schedule(self, duration_s: float) -> tuple[tuple[float, float], ...]:
        """Base rate, a burst from half-way to three quarters, base rate again."""
        return ((0.0, self.base_rps), (duration_s * 0.5, self.burst_rps),
                (duration_s * 0.75, self.base_rps))  # fmt: skip


PROFILES = {
    "peak": Profile(
        "peak",
        "the seed's peak: 200 sync requests/s (360 events/s), with a burst at 600 events/s",
        200.0,
        600.0 / EVENTS_PER_REQUEST,
    ),
    "10x": Profile(
        "10x",
        "ten times the seed's peak: 2,000 sync requests/s (3,600 events/s), burst 6,000 events/s",
        2000.0,
        6000.0 / EVENTS_PER_REQUEST,
    ),
}


@dataclass(frozen=True)
class Sample:
    at_s: float
    offered_rps: float
    requests_per_s: float
    events_per_s: float
    request_p95_ms: float | None
    errors: int
    worker_lag_s: float | None


@dataclass
class Sampler:
    """Turns the simulator's progress calls into one sample a second."""

    schedule: tuple[tuple[float, float], ...]
    samples: list[Sample] = field(default_factory=list)
    _last_s: float = 0.0
    _last_requests: int = 0
    _last_events: int = 0
    _last_latencies: int = 0
    _last_errors: int = 0

    def __call__(self, report: SimulationReport, elapsed_s: float, worker_metrics: str) -> None:
        span = elapsed_s - self._last_s
        if span < 1.0:
            return
        latencies = report.request_latency_ms[self._last_latencies :]
        errors = sum(report.request_errors.values()) + sum(report.batch_errors.values())
        lag = read_worker(worker_metrics, timeout_s=0.5).values.get("event-time lag s")
        offered = next((rps for at, rps in reversed(self.schedule) if elapsed_s >= at), 0.0)
        self.samples.append(
            Sample(
                at_s=round(elapsed_s, 2),
                offered_rps=offered,
                requests_per_s=(report.requests_sent - self._last_requests) / span,
                events_per_s=(report.events_accepted - self._last_events) / span,
                request_p95_ms=percentile(latencies, 95) if latencies else None,
                errors=errors - self._last_errors,
                worker_lag_s=lag,
            )
        )
        self._last_s, self._last_requests = elapsed_s, report.requests_sent
        self._last_events, self._last_latencies = (
            report.events_accepted,
            len(report.request_latency_ms),
        )
        self._last_errors = errors


def run_profile(
    settings: Settings, profile: Profile, duration_s: float | None, results: Path | None
) -> tuple[Path, bool]:
    """Run the profile and write its report; the report's folder and whether it passed."""
    from .peak_report import write_report  # matplotlib is imported only for reports

    duration = duration_s or profile.duration_s
    schedule = profile.schedule(duration)
    sampler = Sampler(schedule)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    run: PipelineRun = run_pipeline(
        settings,
        DemoOptions(
            duration_s=duration,
            rate_rps=profile.base_rps,
            rate_schedule=schedule,
            on_progress=sampler,
            quiet=True,
        ),
    )
    folder = results or settings.data_dir / "results" / f"{started:%Y%m%dT%H%M%SZ}-{profile.name}"
    folder.mkdir(parents=True, exist_ok=True)
    passed = write_report(folder, profile, duration, sampler.samples, run, started,
                          time.monotonic() - clock)  # fmt: skip
    return folder, passed
