"""The production dataflow, as ``python -m bytewax.run "dataflows.worker:production_flow()"``.

``mediation worker`` runs that, one Bytewax worker per process, for the
input partitions this process owns (``--member i/N`` or ``--partitions``,
passed as ``MEDIATION_WORKER_MEMBER`` / ``MEDIATION_WORKER_PARTITIONS``;
``mediation/membership.py``), with its recovery store under ``-r``. N
processes are N independent dataflows: each reads, closes and writes its
own partitions, with its own event time, and none waits for another
(docs/architecture.md). Settings come from the environment
(docs/contracts.md section 1) plus the worker's own knobs:

- ``MEDIATION_ALLOWED_LATENESS_MS`` (default 5000): wait after an
  opportunity's close time before writing its archive record.
- ``MEDIATION_DEFAULT_CLOSURE_WINDOW_MS`` (default 1800000) and
  ``MEDIATION_DEFAULT_GRACE_MS`` (30000): for events whose opportunity never
  arrives (each opportunity carries its own from its config).
- ``MEDIATION_TOMBSTONE_TTL_MS`` (default 3600000): how long closed
  opportunities are remembered to recognise late events.
- ``MEDIATION_MAX_ORPHAN_KEYS_PER_APP`` (default 50000): keys one app may
  hold events for, per process, while their opportunity has not arrived
  (more new keys: dead letters ``too_many_orphans``).
- ``MEDIATION_WORKER_METRICS_PORT``: where this process serves ``/metrics``
  (``mediation worker`` sets it from ``--metrics-port``; 0: off),
  on ``MEDIATION_WORKER_METRICS_HOST`` (``--metrics-host``; default 127.0.0.1).
- ``MEDIATION_DRAIN_SETTLE_MS`` (default 1000): how long a partition read
  to the end of its log holds its event time before following the wall
  clock (``dataflows/watermark.py``).
- ``MEDIATION_SINK_WRITERS`` (default 2): Postgres writer threads (each
  with its connection) of this process; records are spread over them by
  ``opportunity_key`` (``sinks/pipelined.py``).
- ``MEDIATION_GC_INTERVAL_MS`` (default 60000): how often the cyclic
  garbage collector runs (``_tune_gc``; 0: Python's automatic collection).
SIGTERM and SIGINT stop the process cleanly: the input ends, the current
epoch completes, the writers flush, the recovery store takes its snapshot,
one line is logged and the process exits 0 (``dataflows/stopping.py``).
A busy metrics port, input topics that are not co-partitioned, or a
membership that does not fit them stop it at start with one line.

- ``MEDIATION_CRASH_AT`` (drills only, see ``dataflows/faults.py``): SIGKILL
  this process before or after its N-th Postgres batch.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
import time

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSink, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream

from mediation.membership import Membership, MembershipError
from mediation.rules.model import Policy
from mediation.settings import Settings, SettingsError
from mediation.topics import TopicLayoutError, check_copartitioned, producer_config
from sinks.breakers import RedisBreakerSink
from sinks.pipelined import PipelinedSink
from sinks.positions import read_positions
from sinks.postgres import PostgresWriter
from sinks.records import DeadLetterRecord
from storage.cold import open_cold_store
from storage.db import connect

from .decode import kafka_error_letter
from .faults import with_crash_drill
from .lag import HighWatermarkPoller
from .metrics import MetricsPortInUseError, WorkerMetrics
from .pipeline import RawMessage, build_flow
from .positions import PartitionProgress
from .source import OwnedKafkaSource
from .stopping import StopSignals
from .watermark import InputWatermark

__all__ = ["build_production_flow", "policy_from_env", "production_flow"]

log = logging.getLogger(__name__)


def _env_ms(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise SettingsError(f"{name}: expected a non-negative integer of milliseconds, got {raw!r}")
    return int(raw)


def policy_from_env() -> Policy:
    defaults = Policy()
    return Policy(
        default_closure_window_ms=_env_ms(
            "MEDIATION_DEFAULT_CLOSURE_WINDOW_MS", defaults.default_closure_window_ms
        ),
        default_grace_ms=_env_ms("MEDIATION_DEFAULT_GRACE_MS", defaults.default_grace_ms),
        allowed_lateness_ms=_env_ms("MEDIATION_ALLOWED_LATENESS_MS", defaults.allowed_lateness_ms),
        tombstone_ttl_ms=_env_ms("MEDIATION_TOMBSTONE_TTL_MS", defaults.tombstone_ttl_ms),
        max_orphan_keys_per_app=_env_ms(
            "MEDIATION_MAX_ORPHAN_KEYS_PER_APP", defaults.max_orphan_keys_per_app
        ),
    )


def membership_from_env() -> Membership:
    partitions = os.environ.get("MEDIATION_WORKER_PARTITIONS", "")
    if partitions:
        return Membership.parse_partitions(partitions)
    return Membership.parse_member(os.environ.get("MEDIATION_WORKER_MEMBER") or "0/1")


def build_production_flow(
    settings: Settings,
    policy: Policy,
    metrics_port: int = 0,
    metrics_host: str = "127.0.0.1",
    membership: Membership | None = None,
    sink_writers: int = 2,
    stop: StopSignals | None = None,
) -> Dataflow:
    brokers = settings.kafka_bootstrap_servers.split(",")
    topics = settings.topics
    membership = membership or Membership()
    partition_count = check_copartitioned(
        settings.kafka_bootstrap_servers, topics.opportunities, topics.events
    )
    owned = membership.owned(partition_count)
    input_topics = [topics.opportunities, topics.events]
    with connect(settings.database_url, autocommit=True) as conn:
        positions = read_positions(conn, input_topics)
    log.info(
        "worker %s: partitions %s of %d",
        membership,
        ",".join(map(str, sorted(owned))),
        partition_count,
    )

    highs = HighWatermarkPoller(brokers, input_topics).start()
    progress = PartitionProgress()
    watermark = InputWatermark(
        high_watermarks=highs.highs,
        low_watermarks=highs.lows,
        highs_polled_at=highs.polled_at_ms,
        settle_ms=_env_ms("MEDIATION_DRAIN_SETTLE_MS", 1_000),
        flight=progress.counts,
    )

    def kafka_input(flow: Dataflow) -> tuple[Stream[RawMessage], Stream[DeadLetterRecord]]:
        source = OwnedKafkaSource(
            brokers,
            input_topics,
            add_config={
                # Low fetch wait: the local broker otherwise holds fetches long.
                "fetch.wait.max.ms": "10",
                # Read-ahead per partition: 1 MiB is well over a second of
                # input at full speed. librdkafka's default (64 MiB) held
                # hundreds of MiB of prefetched messages in a catching-up
                # worker, memory its allocator then kept.
                "queued.max.messages.kbytes": "1024",
                # A start offset retention has already deleted: read what is
                # left rather than skip to the end of the log.
                "auto.offset.reset": "earliest",
            },
            # Consumer errors come out as items (dead letters), not exceptions.
            raise_on_errors=False,
            owned=owned,
            watermark=watermark,
            positions=positions,
            stop=stop,
        )
        messages = op.input("kafka_in", flow, source)
        split = op.branch("kafka_split", messages, lambda m: isinstance(m, KafkaSourceMessage))
        errors: Stream[KafkaError[bytes | None, bytes | None]] = split.falses  # type: ignore[assignment]
        oks: Stream[RawMessage] = split.trues  # type: ignore[assignment]
        return oks, op.map("kafka_errors", errors, kafka_error_letter)

    metrics = WorkerMetrics(
        watermark.now_ms,
        positions=watermark.positions,
        highs=highs.highs,
        owned=(len(owned), partition_count),
    )
    metrics.serve(metrics_port, metrics_host)
    # Tiered archives: a straggler for a tiered day is settled against them.
    cold_store = open_cold_store(settings.cold_storage_url, settings.aws_endpoint_url)
    return build_flow(
        messages=kafka_input,
        record_sink=PipelinedSink(
            with_crash_drill(
                functools.partial(
                    PostgresWriter,
                    settings.database_url,
                    counters=metrics.write_counters(),
                    events_topic=topics.events,
                    cold_store=cold_store,
                ),
                os.environ.get("MEDIATION_CRASH_AT"),
            ),
            writers=sink_writers,
        ),
        deadletter_sink=KafkaSink(
            brokers,
            topics.deadletter,
            add_config={
                str(name): str(value)
                for name, value in producer_config(
                    settings.kafka_bootstrap_servers, {"enable.idempotence": "true", "acks": "all"}
                ).items()
            },
        ),
        topics=topics,
        policy=policy,
        clock_ms=watermark.now_ms,
        breaker_sink=RedisBreakerSink(settings.redis_url, settings.topic_prefix),
        watermark=watermark,
        metrics=metrics,
        progress=progress,
    )


def _tune_gc() -> None:
    """The cyclic garbage collector runs on a timer, not on allocation counts.

    The worker allocates a few objects per message and holds a large heap
    of open opportunities (millions of objects): Python's automatic
    collection, every 700 allocations, walks the young survivors (that
    state) again and again, a fifth of the worker's CPU at speed. The state
    is freed by reference counting (it holds no cycles), so a full
    collection every ``MEDIATION_GC_INTERVAL_MS`` (default 60 s; 0: Python's
    automatic collection) bounds whatever cyclic garbage the libraries make.
    """
    gc.freeze()  # what was built so far (modules, settings) is never garbage
    interval_ms = _env_ms("MEDIATION_GC_INTERVAL_MS", 60_000)
    if not interval_ms:
        return
    gc.disable()

    def collect_periodically() -> None:
        while True:
            time.sleep(interval_ms / 1000)
            started = time.perf_counter()
            found = gc.collect()
            pause_s = time.perf_counter() - started
            log.log(
                logging.INFO if pause_s > 1 else logging.DEBUG,
                "garbage collection: %d unreachable objects, %.2fs",
                found,
                pause_s,
            )

    threading.Thread(target=collect_periodically, name="gc", daemon=True).start()


def production_flow() -> Dataflow:
    """Entry point for ``bytewax.run``: settings from the environment."""
    logging.basicConfig(
        level=os.environ.get("MEDIATION_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    settings = Settings.from_env()
    _tune_gc()
    port = _env_ms("MEDIATION_WORKER_METRICS_PORT", 0)  # a plain integer, like the others
    host = os.environ.get("MEDIATION_WORKER_METRICS_HOST") or "127.0.0.1"
    writers = max(1, _env_ms("MEDIATION_SINK_WRITERS", 2))
    stop = StopSignals()
    stop.install()  # bytewax.run imports the flow in its main thread: handlers go there
    try:
        return build_production_flow(
            settings, policy_from_env(), port, host, membership_from_env(), writers, stop
        )
    except (MetricsPortInUseError, TopicLayoutError, MembershipError) as exc:
        # One line, no traceback (bytewax.run would print one): exit status 1.
        raise SystemExit(f"mediation worker: {exc}") from None
