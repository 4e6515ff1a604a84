"""Prometheus metrics of one gateway process.

Each app gets its own ``CollectorRegistry`` so tests can build several apps
in one process without "duplicated timeseries" errors.

``mediation_gateway_sync_answers_total{app, placement, result}`` bounds its
labels per process with ``LabelCap`` (``MAX_APP_LABELS`` apps,
``MAX_PLACEMENT_LABELS`` placements; the rest are counted as ``other``): the
values come from requests, which a bug or a caller could vary without end.
``mediation_config_version`` and ``mediation_config_rollout_percent`` are
read from the catalog at scrape time (``watch_rollouts``): the dashboard
marks publishes and rollbacks where they change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mediation.label_cap import LabelCap

__all__ = ["MAX_APP_LABELS", "MAX_PLACEMENT_LABELS", "ConfigRollouts", "GatewayMetrics"]

# Distinct label values one process tracks; later ones are counted as "other".
MAX_APP_LABELS = 100
MAX_PLACEMENT_LABELS = 200

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0)


class ConfigRollouts(Collector):
    """Per app, the version its latest publish operation rolls out and the share served.

    ``source`` answers ``{app_id: (version, percent)}``; the gateway points it
    at its catalog (``GatewayMetrics.watch_rollouts``). A rollback drops the
    percent to 0; a publish raises the version.
    """

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, tuple[int, int]]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        version = GaugeMetricFamily(
            "mediation_config_version",
            "Version of the app's latest publish operation, as this gateway's catalog holds it",
            labels=["app_id"],
        )
        percent = GaugeMetricFamily(
            "mediation_config_rollout_percent",
            "Share of rollout buckets served that version (100 published, 0 rolled back)",
            labels=["app_id"],
        )
        for app_id, (served, share) in sorted(self.source().items()):
            version.add_metric([app_id], served)
            percent.add_metric([app_id], share)
        yield version
        yield percent


@dataclass(frozen=True)
class GatewayMetrics:
    """The gateway's metrics; label children are cached (``labels()`` takes a lock)."""

    registry: CollectorRegistry
    http_requests: Counter
    http_latency: Histogram
    events_accepted: Counter
    events_rejected: Counter
    event_batches_unconfirmed: Counter
    events_resent_not_reproduced: Counter
    opportunities: Counter
    kafka_confirm_latency: Histogram
    idempotent_replays: Counter
    idempotency_unavailable: Counter
    rate_limited: Counter
    ratelimit_degraded: Counter
    breaker_open: Gauge
    degradation_active: Gauge
    events_sampled_out: Counter
    event_batches_acked: Counter
    auth_failures: Counter
    auth_throttled: Counter
    sync_answers: Counter
    config_rollouts: ConfigRollouts
    _app_label: LabelCap = field(default_factory=lambda: LabelCap(MAX_APP_LABELS))
    _placement_label: LabelCap = field(default_factory=lambda: LabelCap(MAX_PLACEMENT_LABELS))
    _answers: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _children: dict[tuple[str, int], tuple[Any, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Label children of the hot paths, bound once: labels() takes a lock.
        bound = self._children
        bound[("confirm", 0)] = (
            self.kafka_confirm_latency.labels("opportunities"),
            self.kafka_confirm_latency.labels("events"),
        )
        bound[("opportunities", 0)] = (
            self.opportunities.labels("fill"),
            self.opportunities.labels("no_fill"),
        )

    @property
    def confirm_opportunities(self) -> Any:
        return self._children[("confirm", 0)][0]

    @property
    def confirm_events(self) -> Any:
        return self._children[("confirm", 0)][1]

    def count_opportunity(self, status: str) -> None:
        fill, no_fill = self._children[("opportunities", 0)]
        (fill if status == "fill" else no_fill).inc()

    def count_sync_answer(self, app_id: str, placement_id: str, status: str) -> None:
        """One sync answer by app, placement and fill (labels capped per process)."""
        key = (
            self._app_label(app_id),
            self._placement_label(placement_id),
            "fill" if status == "fill" else "no_fill",
        )
        child = self._answers.get(key)
        if child is None:
            child = self._answers[key] = self.sync_answers.labels(*key)
        child.inc()

    def watch_rollouts(self, source: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        """Export ``source()`` (the catalog's rollouts) as the config version gauges."""
        self.config_rollouts.source = source

    @classmethod
    def create(cls) -> GatewayMetrics:
        registry = CollectorRegistry()
        # process_resident_memory_bytes and friends: the soak checks memory with them.
        ProcessCollector(registry=registry)
        rollouts = ConfigRollouts()
        registry.register(rollouts)
        return cls(
            sync_answers=Counter(
                "mediation_gateway_sync_answers",
                "Sync requests answered (broker-confirmed), by app, placement and "
                "result (fill, no_fill); apps and placements capped per process",
                ["app", "placement", "result"],
                registry=registry,
            ),
            config_rollouts=rollouts,
            registry=registry,
            http_requests=Counter(
                "mediation_http_requests",
                "HTTP requests by route and status",
                ["route", "status"],
                registry=registry,
            ),
            http_latency=Histogram(
                "mediation_http_request_seconds",
                "HTTP request latency by route",
                ["route"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            events_accepted=Counter(
                "mediation_events_accepted",
                "Events confirmed by the broker and ACKed",
                registry=registry,
            ),
            events_rejected=Counter(
                "mediation_events_rejected",
                "Events rejected per item, by code",
                ["code"],
                registry=registry,
            ),
            event_batches_unconfirmed=Counter(
                "mediation_event_batches_unconfirmed",
                "Event batches answered 503 because the broker did not confirm",
                registry=registry,
            ),
            events_resent_not_reproduced=Counter(
                "mediation_events_resent_not_reproduced",
                "Resent events ACKed on their earlier, late-confirmed send instead of "
                "being produced again",
                registry=registry,
            ),
            opportunities=Counter(
                "mediation_opportunities",
                "Sync requests answered, by delivery status",
                ["status"],
                registry=registry,
            ),
            kafka_confirm_latency=Histogram(
                "mediation_kafka_confirm_seconds",
                "Time from produce to broker confirmation",
                ["topic_kind"],
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            idempotent_replays=Counter(
                "mediation_idempotent_replays",
                "Sync requests answered from the Idempotency-Key store",
                registry=registry,
            ),
            idempotency_unavailable=Counter(
                "mediation_idempotency_unavailable",
                "Sync requests with an Idempotency-Key refused with 503 (store did not answer)",
                registry=registry,
            ),
            rate_limited=Counter(
                "mediation_rate_limited",
                "Calls refused with 429, by kind",
                ["kind"],
                registry=registry,
            ),
            breaker_open=Gauge(
                "mediation_breaker_open",
                "1 while the circuit breaker of (app, source) is open",
                ["app_id", "source_id"],
                registry=registry,
            ),
            degradation_active=Gauge(
                "mediation_degradation_active",
                "1 while an operator has this degradation profile switched on for the app",
                ["app_id", "profile"],
                registry=registry,
            ),
            events_sampled_out=Counter(
                "mediation_events_sampled_out",
                "Events not stored because a degradation profile samples their type "
                "(answered as rejected with code sampled_out)",
                ["event_type"],
                registry=registry,
            ),
            event_batches_acked=Counter(
                "mediation_event_batches_acked",
                "Event batches answered 200 (all valid events broker-confirmed); with "
                "mediation_event_batches_unconfirmed this gives the ACK success ratio",
                registry=registry,
            ),
            ratelimit_degraded=Counter(
                "mediation_ratelimit_degraded",
                "Rate-limit flushes that failed (Redis down: limits enforced per process)",
                registry=registry,
            ),
            auth_failures=Counter(
                "mediation_auth_failures",
                "Failed authentications, by kind (app_key: unknown or revoked write key; "
                "admin_token: missing or wrong bearer token)",
                ["kind"],
                registry=registry,
            ),
            auth_throttled=Counter(
                "mediation_auth_throttled",
                "Authentications refused with 429 auth_throttled, by the budget spent "
                "(address: the caller's own; overall: the process's)",
                ["scope"],
                registry=registry,
            ),
        )

    def observe_http(self, route: str, status: int, seconds: float) -> None:
        children = self._children
        key = (route, status)
        pair = children.get(key)
        if pair is None:
            pair = (self.http_latency.labels(route), self.http_requests.labels(route, str(status)))
            children[key] = pair
        pair[0].observe(seconds)
        pair[1].inc()
