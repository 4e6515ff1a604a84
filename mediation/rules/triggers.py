"""The seed's scaling triggers (INFRA-001 section 6), pure: values in, states and actions out.

``mediation status`` reads the current values and shows each trigger's
state; the Prometheus alert rules in ``deploy/prometheus/alerts.yml``
encode the same thresholds with their "sustained for" durations (a status
read is a point in time; an alert needs the condition to hold).
"""

from __future__ import annotations

from collections.abc import Sequence

from .records import record

__all__ = ["TRIGGERS", "Trigger", "TriggerState", "evaluate", "histogram_quantile"]


@record
class Trigger:
    name: str
    what: str
    threshold: float
    unit: str
    above: bool  # fires when the value is above the threshold (else below)
    sustained: str
    action: str

    def describe_threshold(self) -> str:
        return f"{'>' if self.above else '<'} {self.threshold:g} {self.unit} for {self.sustained}"


TRIGGERS = (
    Trigger(
        "sync_p95_latency",
        "sync request p95 latency",
        300,
        "ms",
        True,
        "15 min",
        "add gateway api processes (one per core); if Postgres or the broker is the slow "
        "hop, scale it; switch a degradation profile on (mediation config degrade) to "
        "shed non-critical work",
    ),
    Trigger(
        "consumer_lag",
        "MQ consumer lag (event time behind the wall clock)",
        300,
        "s",
        True,
        "5 min",
        "increase worker concurrency (more processes with -i/-a, -w); if every partition "
        "has a process, increase the topics' partitions first",
    ),
    Trigger(
        "ack_success",
        "event ACK success",
        99.9,
        "%",
        False,
        "10 min",
        "check the broker (503s mean it did not confirm in time): its health, disk and "
        "partitions; add ingest processes if they are CPU-bound",
    ),
    Trigger(
        "db_cpu",
        "Postgres CPU (proxy: active backends per core)",
        70,
        "%",
        True,
        "15 min",
        "reduce replay concurrency (MEDIATION_REPLAY_REQUESTS_PER_S, replay-jobs "
        "processes), throttle non-critical traffic; scale the Supabase compute",
    ),
    Trigger(
        "redis_memory",
        "Redis memory (of maxmemory, else of system memory)",
        75,
        "%",
        True,
        "15 min",
        "check key growth (idempotency keys live 24 h); raise maxmemory or scale Redis",
    ),
)


@record
class TriggerState:
    trigger: Trigger
    value: float | None
    state: str  # ok | FIRING | unknown
    note: str = ""


def evaluate(trigger: Trigger, value: float | None, note: str = "") -> TriggerState:
    """``FIRING`` when the value is past the threshold now; ``unknown`` without a value."""
    if value is None:
        return TriggerState(trigger, None, "unknown", note)
    past = value > trigger.threshold if trigger.above else value < trigger.threshold
    return TriggerState(trigger, value, "FIRING" if past else "ok", note)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, as Prometheus computes it.

    ``buckets`` are ``(upper bound, cumulative count)`` sorted by bound, the
    last one ``+Inf``; the value is interpolated linearly inside its bucket.
    ``None`` when the histogram is empty.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound  # beyond the last finite bucket: its bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return previous_bound
