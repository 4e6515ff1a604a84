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

import dataclasses
import datetime as dt
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .demo import (
    DemoOptions,
    PipelineRun,
    default_tombstone_ttl_ms,
    run_pipeline,
    with_run_topics,
)
from .rules.triggers import histogram_quantile
from .settings import Settings
from .simulate import scheduled_rate
from .status import read_gateway, read_worker

__all__ = ["PROFILES", "Profile", "Sample", "Sampler", "run_profile"]

EVENTS_PER_REQUEST = 1.8  # the seed's traffic model
GRACE_MS = 2_000  # the demo app's grace (DemoOptions)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    base_rps: float
    burst_rps: float
    duration_s: float = 120.0
    # Under load a batch may take seconds: a window that outlasts the
    # slowest batch keeps the simulator's expectations exact.
    closure_window_ms: int = 30_000
    tombstone_ttl_ms: int | None = None  # None: default_tombstone_ttl_ms of the window
    checks_memory: bool = False  # a soak: memory must be flat after the warm-up

    @property
    def warmup_s(self) -> float:
        """When the worker's state stops growing: a window, its grace, then the tombstone TTL."""
        ttl_ms = self.tombstone_ttl_ms or default_tombstone_ttl_ms(self.closure_window_ms)
        return (self.closure_window_ms + GRACE_MS + ttl_ms) / 1000 + 5

    def at_rate(self, base_rps: float) -> Profile:
        """The same shape at another base rate (a machine that offers less, or more)."""
        scale = base_rps / self.base_rps
        return dataclasses.replace(
            self,
            description=f"{self.description} (run at {base_rps:g} req/s)",
            base_rps=base_rps,
            burst_rps=self.burst_rps * scale,
        )

    def schedule(self, duration_s: float) -> tuple[tuple[float, float], ...]:
        """Base rate, a burst from half-way to three quarters, base rate again."""
        if self.burst_rps == self.base_rps:
            return ((0.0, self.base_rps),)
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
    "soak": Profile(
        "soak",
        "the seed's peak held: 200 sync requests/s (360 events/s) for 10 minutes, with "
        "closed opportunities remembered briefly so the worker's state reaches its steady "
        "size early; after that, memory must stay flat",
        200.0,
        200.0,
        duration_s=600.0,
        closure_window_ms=10_000,
        tombstone_ttl_ms=60_000,
        checks_memory=True,
    ),
}


@dataclass(frozen=True)
class Sample:
    at_s: float
    offered_rps: float
    requests_per_s: float  # sync requests the gateway answered
    events_per_s: float  # events the gateway ACKed
    gateway_p95_ms: float | None  # sync p95 as the gateway measured it (the trigger's measure)
    server_errors: int  # 5xx answers
    worker_lag_s: float | None
    gateway_rss_mib: float | None = None
    worker_rss_mib: float | None = None


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
    from .peak_report import write_report  # matplotlib is imported only for reports

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
