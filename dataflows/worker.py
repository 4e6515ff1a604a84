"""The production dataflow, as ``python -m bytewax.run "dataflows.worker:production_flow()"``.

``mediation worker`` runs that, one Bytewax worker per process, for the
input partitions this process owns (``--member i/N`` or ``--partitions``,
passed as ``MEDIATION_WORKER_MEMBER`` / ``MEDIATION_WORKER_PARTITIONS``;
``mediation/membership.py``), with its recovery store under ``-r``. N
processes are N independent dataflows: each reads, closes and writes its
own partitions, with its own event time, and none waits for another
(docs/architecture.md). Its settings are ``Settings.worker``
(``mediation/settings.py``; the table of docs/contracts.md section 1): the
rules' policy (``MEDIATION_ALLOWED_LATENESS_MS``, the defaults for events
whose opportunity never arrives, the tombstone TTL, the orphan-key bound),
the membership, ``/metrics`` port and host, the drain settle time, the
number of Postgres writer threads (``sinks/pipelined.py``) and the garbage
collector's interval (``_tune_gc``).
SIGTERM and SIGINT stop the process cleanly: the input ends, the current
epoch completes, the writers flush, the recovery store takes its snapshot,
one line is logged and the process exits 0 (``dataflows/stopping.py``).
A busy metrics port, input topics that are not co-partitioned, or a
membership that does not fit them stop it at start with one line.

``MEDIATION_CRASH_AT`` (drills only, see ``dataflows/faults.py``) SIGKILLs
this process before or after its N-th Postgres batch.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSink, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream

from mediation.membership import MembershipError
from mediation.settings import Settings, WorkerSettings
from mediation.topics import TopicLayoutError, check_copartitioned, producer_config
from mediation.wire import DeadLetterRecord
from sinks.breakers import RedisBreakerSink
from sinks.pipelined import PipelinedSink
from sinks.positions import read_positions
from sinks.postgres import PostgresWriter
from storage.cold import cold_store_for
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

__all__ = ["build_production_flow", "production_flow"]

log = logging.getLogger(__name__)


def build_production_flow(settings: Settings, stop: StopSignals | None = None) -> Dataflow:
    worker: WorkerSettings = settings.worker
    brokers = settings.kafka_bootstrap_servers.split(",")
    topics = settings.topics
    membership = worker.membership
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
        settle_ms=worker.drain_settle_ms,
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
    metrics.serve(worker.metrics_port, worker.metrics_host)
    # Tiered archives: a straggler for a tiered day is settled against them.
    cold_store = cold_store_for(settings)
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
                worker.crash_at,
            ),
            writers=worker.sink_writers,
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
        policy=worker.policy,
        clock_ms=watermark.now_ms,
        breaker_sink=RedisBreakerSink(settings.redis_url, settings.topic_prefix),
        watermark=watermark,
        metrics=metrics,
        progress=progress,
    )


def _tune_gc(interval_ms: int) -> None:
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
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    _tune_gc(settings.worker.gc_interval_ms)
    stop = StopSignals()
    stop.install()  # bytewax.run imports the flow in its main thread: handlers go there
    try:
        return build_production_flow(settings, stop)
    except (MetricsPortInUseError, TopicLayoutError, MembershipError) as exc:
        # One line, no traceback (bytewax.run would print one): exit status 1.
        raise SystemExit(f"mediation worker: {exc}") from None
