"""The load profiles of ``mediation simulate --profile`` and the samples a run takes.

Kept apart from the runner (``peak``) and the report (``peak_report``), which
both use them, so neither imports the other's module for its types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mediation.sim.demo import default_tombstone_ttl_ms

__all__ = ["EVENTS_PER_REQUEST", "GRACE_MS", "PROFILES", "Profile", "Sample"]

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
