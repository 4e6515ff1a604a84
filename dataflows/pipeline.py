"""The closing dataflow: named steps, added top to bottom; sources and sinks are arguments.

::

    messages ─decode─┬─ (bucket, record | tick) ─closing_partitions─to_sink_items─┬─> postgres
                     └─ dead letters ──────────────────input_dead_letters─────────┤
                              dead letters (input and rules) ──> deadletter_topic
                              closed opportunities' source outcomes ──> breakers

One Bytewax worker per process: a process owns whole input partitions and
nothing is exchanged between processes (docs/architecture.md).

Production passes the Kafka source and the Postgres / Kafka sinks
(``dataflows.worker``; Postgres through writer threads, keyed by
opportunity); tests pass ``TestingSource``/``TestingSink``.

Each step's work is a function (or, when it needs the worker's metrics or
clock, a small object) of this module; ``build_flow`` reads as the list of
steps. Step ids are part of the recovery format: Bytewax keys the
snapshots of the closing step and of the sinks by step id, under the
flow's (``mediation-closing.closing_partitions``), so a renamed step does
not resume from an existing recovery store. Bytewax's composite
operators (``@operator``) put their steps' ids under their own, so the
composites here are plain functions that add their steps with the ids they
always had (``tests/dataflows/test_pipeline_steps.py`` holds the list).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import FixedPartitionedSink, Sink

from mediation.clock import now_ms
from mediation.rules.breaker import source_outcomes
from mediation.rules.model import ClosedOpportunity, DeadLetter, Output, Policy
from mediation.settings import Topics
from mediation.wire import DeadLetterRecord, encode_dead_letter
from sinks.breakers import SourceOutcome
from sinks.positions import PositionMark
from sinks.records import SinkItem, dead_letter_from_rules

from .closing import BucketSnapshot, BucketValue, ClosingBucket, closing_builder, steady_pace
from .decode import decode_message
from .metrics import WorkerMetrics
from .positions import POSITION_INTERVAL_MS, OpenBuckets, PartitionProgress, PositionTick
from .watermark import InputWatermark

__all__ = ["FLOW_ID", "RawMessage", "build_flow", "to_deadletter_message"]

# The dataflow's id: every step id (and so the recovery store's keys) is under it.
FLOW_ID = "mediation-closing"

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]
# (bucket key, record or position tick): what the closing step takes.
Keyed = tuple[str, BucketValue]
# (bucket key, output or position mark): what the closing step gives.
Closed = tuple[str, Output | PositionMark]


# ---- decode: input batches -> records keyed by bucket, and dead letters --------------


@dataclass(frozen=True)
class DecodedStreams:
    """What ``decode`` gives (like Bytewax's ``KafkaOpOut``: oks and errors)."""

    keyed: Stream[Keyed]  # records and position ticks, keyed as the closing step takes them
    dead_letters: Stream[DeadLetterRecord]  # messages that could not be decoded


class ObserveAndDecode:
    """The ``decode`` step's work, one Python call per input batch.

    It observes the batch (event time, metrics, once per partition and
    topic), decodes each message, and every ``POSITION_INTERVAL_MS`` puts a
    position tick for each partition read here ahead of the batch.
    Bytewax's per-step cost is paid per item or per batch, so steps are few
    and batched.
    """

    def __init__(
        self,
        topics: Topics,
        watermark: InputWatermark | None,
        metrics: WorkerMetrics | None,
        progress: PartitionProgress | None,
        wall_ms: Callable[[], int],
    ):
        self._topics = topics
        self._watermark = watermark
        self._metrics = metrics
        self._progress = progress
        self._wall_ms = wall_ms
        self._next_tick_at = wall_ms() + POSITION_INTERVAL_MS

    def __call__(self, messages: list[RawMessage]) -> list[Keyed | DeadLetterRecord]:
        out: list[Keyed | DeadLetterRecord] = []
        if self._progress is not None and self._wall_ms() >= self._next_tick_at:
            self._next_tick_at = self._wall_ms() + POSITION_INTERVAL_MS
            out.extend(self._position_ticks())
        topics = self._topics
        decoded = [decode_message(topics, message) for message in messages]
        # Counted before the watermark sees the batch's timestamps: a value
        # computed from them is released only once these are applied.
        if self._progress is not None:
            sent: dict[int | None, int] = {}
            for item in decoded:
                if type(item) is tuple:
                    partition = item[1].source_partition
                    sent[partition] = sent.get(partition, 0) + 1
            for partition, count in sent.items():
                self._progress.sent(partition, count)
        if self._watermark is not None:
            self._watermark.observe_batch(messages)
        if self._metrics is not None:
            self._metrics.observe_messages(message.topic for message in messages)
        out.extend(decoded)
        return out

    def _position_ticks(self) -> list[Keyed]:
        """Every partition read here: where its input stands, before this batch."""
        if self._watermark is None or self._progress is None:
            return []
        by_partition: dict[int, dict[str, int]] = {}
        for (topic, partition), offset in self._watermark.next_offsets().items():
            by_partition.setdefault(partition, {})[topic] = offset
        ticks = [
            PositionTick(partition, self._progress.counts(partition)[0], offsets)
            for partition, offsets in sorted(by_partition.items())
        ]
        return [(tick.key, tick) for tick in ticks]


def is_keyed(item: Keyed | DeadLetterRecord) -> bool:
    return isinstance(item, tuple)


def decode(raw: Stream[RawMessage], observe_and_decode: ObserveAndDecode) -> DecodedStreams:
    """Steps ``decode`` and ``split_decoded``."""
    decoded = op.flat_map_batch("decode", raw, observe_and_decode)
    split = op.branch("split_decoded", decoded, is_keyed)
    return DecodedStreams(
        keyed=cast(Stream[Keyed], split.trues),
        dead_letters=cast(Stream[DeadLetterRecord], split.falses),
    )


# ---- close: the stateful step, one logic per bucket -----------------------------------


def closing_buckets(
    topics: Topics,
    policy: Policy,
    clock_ms: Callable[[int | None], int],
    drain_on_eof: bool,
    watermark: InputWatermark | None,
    metrics: WorkerMetrics | None,
    progress: PartitionProgress | None,
) -> Callable[[BucketSnapshot | None], ClosingBucket]:
    """The ``closing_partitions`` step's logic, paced by the watermark and counted in
    the metrics when there are some, answering position ticks when ``progress`` is given."""
    open_buckets = (
        OpenBuckets(topics.opportunities, topics.events, progress) if progress is not None else None
    )
    pace = watermark.pace if watermark is not None else steady_pace
    counts = metrics.state if metrics is not None else None
    return closing_builder(policy, clock_ms, drain_on_eof, pace, counts, progress, open_buckets)


class ToSinkItem:
    """The ``to_sink_items`` step: a closing output as the sinks take it, counted."""

    def __init__(
        self, topics: Topics, clock_ms: Callable[[int | None], int], metrics: WorkerMetrics | None
    ):
        self._topics = topics
        self._clock_ms = clock_ms
        self._metrics = metrics

    def __call__(self, key_output: Closed) -> SinkItem | PositionMark:
        output = key_output[1]
        if isinstance(output, PositionMark):
            return output
        item = (
            dead_letter_from_rules(output, self._clock_ms(None), self._topics.events)
            if isinstance(output, DeadLetter)
            else output
        )
        if self._metrics is not None:
            self._metrics.observe_output(item)
        return item


def without_position_marks(item: SinkItem | PositionMark) -> SinkItem | None:
    """The ``records`` step: position marks are for Postgres only."""
    return None if isinstance(item, PositionMark) else item


# ---- write: Postgres, the breakers, the dead-letter topic -----------------------------


def count_output(metrics: WorkerMetrics, _step_id: str, item: SinkItem) -> None:
    """The ``count_input_dead_letters`` step (an inspector)."""
    metrics.observe_output(item)


def to_one_key(_item: Any) -> str:
    return "postgres"


def write_postgres(
    sink_items: Stream[SinkItem | PositionMark],
    letters: Stream[DeadLetterRecord],
    record_sink: Sink[Any],
) -> None:
    """Steps ``to_postgres``, ``to_writers`` and ``postgres``: records, dead letters and
    position marks go to Postgres, in the same batches."""
    to_postgres: Stream[Any] = op.merge("to_postgres", sink_items, letters)
    if isinstance(record_sink, FixedPartitionedSink):
        # One key: the sink spreads items over its writers itself.
        to_postgres = op.key_on("to_writers", to_postgres, to_one_key)
    op.output("postgres", to_postgres, record_sink)


def source_outcomes_of(output: SinkItem) -> list[SourceOutcome]:
    if not isinstance(output, ClosedOpportunity):
        return []
    opportunity = output.opportunity
    # The minute the outcome became known (close time), not the request's:
    # the gateway looks at the last minutes of outcomes.
    minute = output.archive.closed_at_ms // 60_000
    return [
        SourceOutcome(opportunity.app_id, source_id, minute, failed, opportunity.config_version)
        for source_id, failed in source_outcomes(output)
    ]


def write_breakers(records: Stream[SinkItem], breaker_sink: Sink[SourceOutcome]) -> None:
    """Steps ``source_outcomes`` and ``breakers``."""
    outcomes = op.flat_map("source_outcomes", records, source_outcomes_of)
    op.output("breakers", outcomes, breaker_sink)


def to_deadletter_message(record: DeadLetterRecord) -> KafkaSinkMessage[bytes, bytes]:
    key = (record.opportunity_key or record.id).encode()
    return KafkaSinkMessage(key, encode_dead_letter(record))


def rule_dead_letter_message(item: SinkItem) -> KafkaSinkMessage[bytes, bytes] | None:
    return to_deadletter_message(item) if isinstance(item, DeadLetterRecord) else None


def write_dead_letters(
    records: Stream[SinkItem], letters: Stream[DeadLetterRecord], deadletter_sink: Sink[Any]
) -> None:
    """Steps ``rule_dead_letters``, ``encode_dead_letters``, ``all_dead_letters`` and
    ``deadletter_topic``: every dead letter, the rules' and the input's, to the topic."""
    rule_letters = op.filter_map("rule_dead_letters", records, rule_dead_letter_message)
    input_letters = op.map("encode_dead_letters", letters, to_deadletter_message)
    all_letters = op.merge("all_dead_letters", rule_letters, input_letters)
    op.output("deadletter_topic", all_letters, deadletter_sink)


# ---- the flow -------------------------------------------------------------------------


def build_flow(
    *,
    messages: Callable[[Dataflow], tuple[Stream[RawMessage], Stream[DeadLetterRecord]]],
    record_sink: Sink[Any],
    deadletter_sink: Sink[Any] | None,
    topics: Topics,
    policy: Policy,
    clock_ms: Callable[[int | None], int],
    drain_on_eof: bool = False,
    breaker_sink: Sink[SourceOutcome] | None = None,
    watermark: InputWatermark | None = None,
    metrics: WorkerMetrics | None = None,
    progress: PartitionProgress | None = None,
    wall_ms: Callable[[], int] = now_ms,
) -> Dataflow:
    """Build the dataflow.

    ``record_sink`` takes sink items, or, when it is a
    ``FixedPartitionedSink`` (production: ``sinks.pipelined``), ``(key,
    item)`` pairs (one key: the sink spreads items over its writers itself).
    ``messages`` adds the input step(s) to the flow and returns the stream of
    raw messages plus a stream of input-level dead letters (e.g. Kafka
    errors). ``drain_on_eof`` closes every open opportunity when a finite
    input ends (tests, batch re-processing); production tails forever.
    ``clock_ms(partition)`` is a partition's event time: production passes
    ``watermark.now_ms`` (see ``dataflows/watermark.py``) and the watermark
    itself, which is fed every input message. ``progress``, when given,
    counts each partition's records sent to and applied by the closing step
    (the watermark releases a value only once what was read before it is
    applied), and with a watermark, position ticks go to each partition
    every ``POSITION_INTERVAL_MS`` of ``wall_ms`` and come out as marks of
    its safe restart offsets (``dataflows/positions.py``).
    """
    flow = Dataflow(FLOW_ID)
    raw, input_errors = messages(flow)
    decoded = decode(raw, ObserveAndDecode(topics, watermark, metrics, progress, wall_ms))
    # The stateful step: its id keys the buckets' state in the recovery store
    # (a new id for the partition-keyed buckets: stores of the earlier
    # layouts are not resumed into it; docs/operations.md).
    closed = op.stateful_batch(
        "closing_partitions",
        decoded.keyed,
        closing_buckets(topics, policy, clock_ms, drain_on_eof, watermark, metrics, progress),
    )
    sink_items = op.map("to_sink_items", closed, ToSinkItem(topics, clock_ms, metrics))
    letters = op.merge("input_dead_letters", decoded.dead_letters, input_errors)
    if metrics is not None:
        letters = op.inspect(
            "count_input_dead_letters", letters, functools.partial(count_output, metrics)
        )
    write_postgres(sink_items, letters, record_sink)
    records: Stream[SinkItem] = op.filter_map("records", sink_items, without_position_marks)
    if breaker_sink is not None:
        write_breakers(records, breaker_sink)
    if deadletter_sink is not None:
        write_dead_letters(records, letters, deadletter_sink)
    return flow
