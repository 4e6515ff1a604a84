"""Prometheus metrics of one worker process, served on ``/metrics``.

Bytewax keeps Kafka offsets in its recovery store, so broker-side
consumer-group lag says nothing here. Instead: the lag per input partition
in messages (broker high watermark minus the next offset read, see
``dataflows/lag.py``) and the event-time lag (how far the input watermark
trails the wall clock), which is the seed's "MQ consumer lag" trigger.
The port is ``MEDIATION_WORKER_METRICS_PORT`` plus the process index
(``mediation worker`` sets it; 0 disables the endpoint). The same server
answers ``/healthz`` (the process is alive and serving: 200
``{"status": "ok"}``; it checks no dependency). A port already taken stops
the worker at start (``MetricsPortInUseError``): otherwise another process
would answer the scrapes in its name.

The business counters (archives by outcome, revenue, impressions) carry the
app and the credited source as labels; ``LabelCap`` bounds them per process
(``MAX_APP_LABELS`` apps, ``MAX_SOURCE_LABELS`` sources, the rest counted as
``other``) and a currency that is not three capital letters is ``other``.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from mediation.clock import now_ms
from mediation.errors import ServiceError
from mediation.label_cap import OTHER, LabelCap, currency_label
from mediation.rules.model import (
    OUTCOMES,
    ArchiveRecord,
    ClosedOpportunity,
    LateEvent,
    OrphanEvents,
)
from mediation.wire import DeadLetterRecord
from sinks.postgres import WriteCounters
from sinks.records import SinkItem

from .closing import StateCounts
from .watermark import PartitionKey

__all__ = ["MAX_APP_LABELS", "MAX_SOURCE_LABELS", "MetricsPortInUseError", "WorkerMetrics"]

# Distinct label values one process tracks; later ones are counted as "other".
MAX_APP_LABELS = 100
MAX_SOURCE_LABELS = 50

log = logging.getLogger(__name__)

_HEALTHY = b'{"status":"ok"}'


class MetricsPortInUseError(ServiceError):
    """The worker's ``/metrics`` port is taken by another process."""

    code = "metrics_port_in_use"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the worker's log


def _endpoints(metrics_app: Callable[..., Any]) -> Callable[..., Any]:
    """``/metrics`` (Prometheus), ``/healthz`` (alive), 404 for anything else."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [_HEALTHY]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: the worker serves /metrics and /healthz\n"]

    return app


class _PartitionLag(Collector):
    """``mediation_worker_partition_lag_messages{topic,partition}`` at scrape time."""

    def __init__(
        self,
        positions: Callable[[], Mapping[PartitionKey, int]],
        highs: Callable[[], Mapping[PartitionKey, int]],
    ):
        self._positions = positions
        self._highs = highs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mediation_worker_partition_lag_messages",
            "Broker high watermark minus the next offset this process will read, "
            "per input partition it has read from",
            labels=["topic", "partition"],
        )
        highs = self._highs()
        for (topic, partition), position in sorted(self._positions().items()):
            high = highs.get((topic, partition))
            if high is not None:
                family.add_metric([topic, str(partition)], max(0, high - position))
        yield family


class _HeldOrphans(Collector):
    """``mediation_worker_held_orphan_keys{app_id}`` at scrape time."""

    def __init__(self, state: StateCounts):
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mediation_worker_held_orphan_keys",
            "Keys this process holds events for while their opportunity has not arrived, "
            "per app (bounded by MEDIATION_MAX_ORPHAN_KEYS_PER_APP)",
            labels=["app_id"],
        )
        for app_id, keys in sorted(dict(self._state.orphan_keys).items()):
            family.add_metric([app_id], keys)
        yield family


class WorkerMetrics:
    def __init__(
        self,
        watermark_ms: Callable[[], int],
        positions: Callable[[], Mapping[PartitionKey, int]] | None = None,
        highs: Callable[[], Mapping[PartitionKey, int]] | None = None,
        owned: tuple[int, int] | None = None,
    ):
        self.registry = CollectorRegistry()
        # process_resident_memory_bytes and friends: the soak checks memory with them.
        ProcessCollector(registry=self.registry)
        self.messages = Counter(
            "mediation_worker_messages",
            "Kafka messages read, by topic",
            ["topic"],
            registry=self.registry,
        )
        self.archives = Counter(
            "mediation_worker_archives", "Archive records emitted", registry=self.registry
        )
        self.archive_outcomes = Counter(
            "mediation_worker_archives_by_outcome",
            "Archive records emitted, by app and outcome (apps capped per process)",
            ["app", "outcome"],
            registry=self.registry,
        )
        self.revenue_micros = Counter(
            "mediation_worker_revenue_micros",
            "Revenue of archived opportunities in micros of the currency, by app, "
            "credited source and currency (never add across currencies)",
            ["app", "source", "currency"],
            registry=self.registry,
        )
        self.impressions = Counter(
            "mediation_worker_impressions",
            "Counted impressions of archived opportunities, by app and credited source",
            ["app", "source"],
            registry=self.registry,
        )
        self._app_label = LabelCap(MAX_APP_LABELS)
        self._source_label = LabelCap(MAX_SOURCE_LABELS)
        self._business: dict[tuple[object, ...], Any] = {}
        self.late_events = Counter(
            "mediation_worker_late_events",
            "Events that arrived after their archive record",
            registry=self.registry,
        )
        self.orphan_events = Counter(
            "mediation_worker_orphan_events",
            "Events whose opportunity never arrived",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "mediation_worker_dead_letters",
            "Dead letters, by reason",
            ["reason"],
            registry=self.registry,
        )
        lag = Gauge(
            "mediation_worker_event_time_lag_seconds",
            "Wall clock minus the input watermark (consumer lag in time)",
            registry=self.registry,
        )
        lag.set_function(lambda: max(0.0, (now_ms() - watermark_ms()) / 1000))
        self.batches_written = Counter(
            "mediation_worker_batches_written",
            "Postgres transactions committed by the sink",
            registry=self.registry,
        )
        self.rows_written = Counter(
            "mediation_worker_rows_written",
            "Rows sent to Postgres in committed transactions (duplicates skipped included)",
            registry=self.registry,
        )
        self.write_retries = Counter(
            "mediation_worker_write_retries",
            "Postgres write attempts that failed for database reasons and are retried",
            registry=self.registry,
        )
        self.state = StateCounts()
        state = self.state
        Gauge(
            "mediation_worker_open_opportunities",
            "Opportunities open in this process's state",
            registry=self.registry,
        ).set_function(lambda: state.open)
        Gauge(
            "mediation_worker_tombstones",
            "Closed opportunities remembered to recognise late events",
            registry=self.registry,
        ).set_function(lambda: state.tombstones)
        Gauge(
            "mediation_worker_open_events",
            "Event copies held by open opportunities",
            registry=self.registry,
        ).set_function(lambda: state.open_events)
        self.registry.register(_HeldOrphans(state))
        if owned is not None:
            # Summed over the members against the topics' count: a member
            # that is down leaves partitions nobody reads (deploy/ alerts).
            Gauge(
                "mediation_worker_partitions_owned",
                "Input partitions this worker process owns (reads, closes and writes)",
                registry=self.registry,
            ).set(owned[0])
            Gauge(
                "mediation_worker_input_partitions",
                "Partitions of each input topic (co-partitioned: the same for both)",
                registry=self.registry,
            ).set(owned[1])
        if positions is not None and highs is not None:
            self.registry.register(_PartitionLag(positions, highs))

    def write_counters(self) -> WriteCounters:
        def batch_written(rows: int) -> None:
            self.batches_written.inc()
            self.rows_written.inc(rows)

        return WriteCounters(batch_written=batch_written, retried=self.write_retries.inc)

    def observe_messages(self, topics: Iterable[str | None]) -> None:
        """Count a batch of input messages by topic (one increment per topic)."""
        for topic, count in collections.Counter(topics).items():
            self.messages.labels(topic or "unknown").inc(count)

    def observe_output(self, item: SinkItem) -> None:
        if isinstance(item, ClosedOpportunity):
            self.archives.inc()
            self._observe_archive(item.archive)
        elif isinstance(item, LateEvent):
            self.late_events.inc()
        elif isinstance(item, OrphanEvents):
            self.orphan_events.inc(len(item.events))
        elif isinstance(item, DeadLetterRecord):
            self.dead_letters.labels(item.reason).inc()

    def _child(self, counter: Counter, labels: tuple[str, ...]) -> Any:
        # Label children cached: labels() takes a lock, and this runs on every close.
        key = (counter, *labels)
        child = self._business.get(key)
        if child is None:
            child = self._business[key] = counter.labels(*labels)
        return child

    def _observe_archive(self, archive: ArchiveRecord) -> None:
        app = self._app_label(archive.app_id)
        outcome = archive.outcome if archive.outcome in OUTCOMES else OTHER
        self._child(self.archive_outcomes, (app, outcome)).inc()
        impressions = archive.counts.get("impression", 0)
        if not impressions and not archive.revenue_micros:
            return
        source = self._source_label(archive.credited_source_id or "none")
        if impressions:
            self._child(self.impressions, (app, source)).inc(impressions)
        if archive.revenue_micros:
            currency = currency_label(archive.currency)
            self._child(self.revenue_micros, (app, source, currency)).inc(archive.revenue_micros)

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingWSGIServer | None:
        """Serve ``/metrics`` and ``/healthz`` in a thread; ``port`` 0: nothing.

        Raises ``MetricsPortInUseError`` when the address cannot be bound.
        """
        if port <= 0:
            return None
        app = _endpoints(make_wsgi_app(self.registry))
        try:
            server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
        except OSError as exc:
            raise MetricsPortInUseError(
                f"worker metrics port {host}:{port} cannot be bound ({exc.strerror or exc}): "
                "another process holds it; free it or choose another "
                "--metrics-port (MEDIATION_WORKER_METRICS_PORT)"
            ) from exc
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        log.info("worker metrics on %s:%d/metrics (and /healthz)", host, port)
        return server
