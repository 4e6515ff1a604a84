"""Circuit breakers per (app, ad source), from closed opportunities.

The worker counts, per minute of opportunity time, how often each waterfall
source was tried and how often it failed (``load_failed``); the gateway sums
the last ``window_minutes`` and opens a source's breaker when it failed at
least ``open_failure_ratio`` of at least ``min_attempts`` tries. An open
breaker skips the source, except for a ``probe_share`` trickle of requests
(the half-open state): the probes' outcomes flow back the same way and close
the breaker once the source recovers. Outcomes are filed under the minute
the opportunity *closed* (when they become known), so the window sees them
however long an opportunity stayed open. Everything here is a pure function of
counts, so every gateway process reaches the same decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .model import ClosedOpportunity, WaterfallEntry
from .records import record

__all__ = [
    "BreakerPolicy",
    "SourceHealth",
    "admitted_waterfall",
    "breaker_field",
    "health_by_source",
    "is_open",
    "source_outcomes",
]


@record
class BreakerPolicy:
    window_minutes: int = 2
    min_attempts: int = 20
    open_failure_ratio: float = 0.5
    probe_share: float = 0.05
    # Once open, only probes try the source, so attempts fall below
    # min_attempts; this many failures with no success keeps it open (and
    # opens it for apps too small to reach min_attempts).
    min_failures_without_success: int = 3


@record
class SourceHealth:
    attempts: int = 0
    failures: int = 0


def source_outcomes(closed: ClosedOpportunity) -> list[tuple[str, bool]]:
    """``(source_id, failed)`` for every waterfall source the SDK reported on.

    A source counts as tried when a counted event names it; it failed when
    one of those is ``load_failed`` and none is ``loaded``/``impression``.
    """
    waterfall = {entry.source_id for entry in closed.opportunity.waterfall}
    failed: dict[str, bool] = {}
    for stored in closed.events:
        source = stored.event.source_id
        if stored.excluded_reason is not None or source not in waterfall:
            continue
        if stored.event.type == "load_failed":
            failed.setdefault(source, True)
        elif stored.event.type in ("loaded", "impression"):
            failed[source] = False
    return sorted(failed.items())


def breaker_field(source_id: str, minute: int, kind: str) -> str:
    """The Redis hash field of one counter: ``kind`` is ``a`` (attempts) or ``f``."""
    return f"{source_id}|{minute}|{kind}"


def health_by_source(
    counts: Mapping[str, int], now_minute: int, policy: BreakerPolicy
) -> dict[str, SourceHealth]:
    """Sum the counters of the last ``window_minutes`` (the current one included)."""
    attempts: dict[str, int] = {}
    failures: dict[str, int] = {}
    for field_name, value in counts.items():
        parts = field_name.rsplit("|", 2)
        if len(parts) != 3 or not parts[1].lstrip("-").isdigit():
            continue
        source, minute_text, kind = parts
        if not now_minute - policy.window_minutes < int(minute_text) <= now_minute:
            continue
        target = attempts if kind == "a" else failures if kind == "f" else None
        if target is not None:
            target[source] = target.get(source, 0) + int(value)
    return {source: SourceHealth(attempts[source], failures.get(source, 0)) for source in attempts}


def is_open(health: SourceHealth, policy: BreakerPolicy) -> bool:
    if health.attempts >= policy.min_attempts:
        return health.failures >= policy.open_failure_ratio * health.attempts
    # Low volume (a small app, or an open breaker seeing only probes): open
    # while it keeps failing and nothing succeeds.
    return (
        health.failures == health.attempts
        and health.failures >= policy.min_failures_without_success
    )


def admitted_waterfall(
    waterfall: Iterable[WaterfallEntry],
    open_sources: frozenset[str],
    probe_roll: float,
    policy: BreakerPolicy,
) -> tuple[WaterfallEntry, ...]:
    """The waterfall without open sources, unless this request is a probe.

    ``probe_roll`` is a uniform number in [0, 1) drawn by the caller.
    """
    if not open_sources or probe_roll < policy.probe_share:
        return tuple(waterfall)
    return tuple(entry for entry in waterfall if entry.source_id not in open_sources)
