"""Whether a process's memory stayed flat through a soak (pure).

A soak's state is bounded by design: the worker forgets closed opportunities
after the tombstone TTL, the gateway keeps nothing per request. Once the run
is past its warm-up (the window, the grace and that TTL), resident memory must
stop rising. The rise is measured as a least-squares line through the samples
after the warm-up, so one garbage-collector step or allocator burst does not
decide it; the line's rise over that span must stay within an allowance.
"""

from __future__ import annotations

from collections.abc import Sequence

from .records import record_unslotted

__all__ = ["ALLOWED_RISE_MIB", "ALLOWED_RISE_SHARE", "MemoryRise", "memory_rise"]

# A rise this small is allocator and interpreter noise, not a leak.
ALLOWED_RISE_MIB = 16.0
ALLOWED_RISE_SHARE = 0.10  # of the memory at the start of the measured span


@record_unslotted
class MemoryRise:
    start_mib: float  # the line's value where the measured span starts
    rise_mib: float  # the line's rise over the span
    per_minute_mib: float
    span_s: float
    samples: int

    @property
    def allowed_mib(self) -> float:
        return max(ALLOWED_RISE_MIB, ALLOWED_RISE_SHARE * self.start_mib)

    @property
    def flat(self) -> bool:
        return self.rise_mib <= self.allowed_mib


def memory_rise(points: Sequence[tuple[float, float]], after_s: float) -> MemoryRise | None:
    """The fitted rise of ``(seconds, MiB)`` points after ``after_s``; None below 3 points."""
    measured = [(t, mib) for t, mib in points if t >= after_s]
    if len(measured) < 3:
        return None
    n = len(measured)
    mean_t = sum(t for t, _ in measured) / n
    mean_m = sum(m for _, m in measured) / n
    spread = sum((t - mean_t) ** 2 for t, _ in measured)
    if spread == 0:
        return None
    slope = sum((t - mean_t) * (m - mean_m) for t, m in measured) / spread  # MiB per second
    first_t, last_t = measured[0][0], measured[-1][0]
    start = mean_m + slope * (first_t - mean_t)
    return MemoryRise(
        start_mib=start,
        rise_mib=slope * (last_t - first_t),
        per_minute_mib=slope * 60,
        span_s=last_t - first_t,
        samples=n,
    )
