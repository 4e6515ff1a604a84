"""The closing dataflow, wired from named steps; sources and sinks are arguments.

::

    messages ─observe+decode─┬─ (bucket, record | tick) ─closing─to_sink_items─┬─> postgres
                             └─ dead letters ─────────────────────────────────┤
                                   dead letters (input and rules) ──> deadletter topic
                                   closed opportunities' source outcomes ──> breakers

One Bytewax worker per process: a process owns whole input partitions and
nothing is exchanged between processes (docs/architecture.md).

Production passes the Kafka source and the Postgres / Kafka sinks
(``dataflows.worker``; Postgres through writer threads, keyed by
opportunity); tests pass ``TestingSource``/``TestingSink``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import FixedPartitionedSink, Sink

from mediation.clock import now_ms
from mediation.rules.breaker import source_outcomes
from mediation.rules.model import (
    ClosedOpportunity,
    DeadLetter,
    Output,
    Policy,
)
from mediation.settings import Topics
from sinks.breakers import SourceOutcome
from sinks.positions import PositionMark
from sinks.records import DeadLetterRecord, SinkItem, dead_letter_from_rules, encode_dead_letter

from .closing import BucketValue, closing_builder, steady_pace
from .decode import Decoded, decode_message
from .metrics import WorkerMetrics
from .positions import POSITION_INTERVAL_MS, OpenBuckets, PartitionProgress, PositionTick
from .watermark import InputWatermark

__all__ = ["build_flow", "to_deadletter_message"]

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]


def to_deadletter_message(record: DeadLetterRecord) -> KafkaSinkMessage[bytes, bytes]:
    key = (record.opportunity_key or record.id).encode()
    return KafkaSinkMessage(key, encode_dead_letter(record))


def _source_outcomes(output: SinkItem) -> list[SourceOutcome]:
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


def build_flow(
    *,
    messages: Callable[[Dataflow], tuple[Stream[RawMessage], Stream[DeadLetterRecord]]],
    record_sink: Sink[Any],
    deadletter_sink: Sink[Any] | None,
    topics: Topics,
    policy: Policy,
    clock_ms: Callable[[int | None], int],
    drain_on_eof: bool = False,
    flow_id: str = "mediation-closing",
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
    every ``POSITION_INTERVAL_MS`` and come out as marks of its safe
    restart offsets (``dataflows/positions.py``).
    """
    flow = Dataflow(flow_id)
    raw, input_errors = messages(flow)
    open_buckets = (
        OpenBuckets(topics.opportunities, topics.events, progress) if progress is not None else None
    )
    next_tick_at = [wall_ms() + POSITION_INTERVAL_MS]

    def position_ticks() -> list[tuple[str, BucketValue]]:
        """Every partition read here: where its input stands, before this batch."""
        if watermark is None or progress is None:
            return []
        by_partition: dict[int, dict[str, int]] = {}
        for (topic, partition), offset in watermark.next_offsets().items():
            by_partition.setdefault(partition, {})[topic] = offset
        ticks = [
            PositionTick(partition, progress.counts(partition)[0], offsets)
            for partition, offsets in sorted(by_partition.items())
        ]
        return [(tick.key, tick) for tick in ticks]

    # One Python call per input batch: observe it (event time, metrics, once
    # per partition and topic), decode each message. Bytewax's per-step cost
    # is paid per item or per batch, so steps are few and batched.
    def observe_and_decode(
        messages: list[RawMessage],
    ) -> list[Decoded | tuple[str, BucketValue] | DeadLetterRecord]:
        out: list[Decoded | tuple[str, BucketValue] | DeadLetterRecord] = []
        if progress is not None and wall_ms() >= next_tick_at[0]:
            next_tick_at[0] = wall_ms() + POSITION_INTERVAL_MS
            out.extend(position_ticks())
        decoded = [decode_message(topics, message) for message in messages]
        # Counted before the watermark sees the batch's timestamps: a value
        # computed from them is released only once these are applied.
        if progress is not None:
            sent: dict[int | None, int] = {}
            for item in decoded:
                if type(item) is tuple:
                    partition = item[1].source_partition
                    sent[partition] = sent.get(partition, 0) + 1
            for partition, count in sent.items():
                progress.sent(partition, count)
        if watermark is not None:
            watermark.observe_batch(messages)
        if metrics is not None:
            metrics.observe_messages(message.topic for message in messages)
        out.extend(decoded)
        return out

    decoded = op.flat_map_batch("decode", raw, observe_and_decode)
    branch = op.branch("split_decoded", decoded, lambda item: isinstance(item, tuple))
    keyed: Stream[tuple[str, BucketValue]] = branch.trues  # type: ignore[assignment]
    pace = watermark.pace if watermark is not None else steady_pace
    counts = metrics.state if metrics is not None else None
    # A new step id for the partition-keyed buckets (recovery stores of the
    # earlier layouts are not resumed into it; docs/operations.md).
    outputs = op.stateful_batch(
        "closing_partitions",
        keyed,
        closing_builder(policy, clock_ms, drain_on_eof, pace, counts, progress, open_buckets),
    )

    def to_sink_item(key_output: tuple[str, Output | PositionMark]) -> SinkItem | PositionMark:
        output = key_output[1]
        if isinstance(output, PositionMark):
            return output
        item = (
            dead_letter_from_rules(output, clock_ms(None), topics.events)
            if isinstance(output, DeadLetter)
            else output
        )
        if metrics is not None:
            metrics.observe_output(item)
        return item

    sink_items = op.map("to_sink_items", outputs, to_sink_item)
    decode_letters: Stream[DeadLetterRecord] = branch.falses  # type: ignore[assignment]
    letters = op.merge("input_dead_letters", decode_letters, input_errors)
    if metrics is not None:
        letters = op.inspect(
            "count_input_dead_letters", letters, lambda _step, item: metrics.observe_output(item)
        )
    # Records, dead letters and position marks go to Postgres, in the same batches.
    to_postgres: Stream[Any] = op.merge("to_postgres", sink_items, letters)
    if isinstance(record_sink, FixedPartitionedSink):
        to_postgres = op.key_on("to_writers", to_postgres, lambda _item: "postgres")
    op.output("postgres", to_postgres, record_sink)
    records: Stream[SinkItem] = op.filter_map(
        "records", sink_items, lambda item: None if isinstance(item, PositionMark) else item
    )
    if breaker_sink is not None:
        outcomes = op.flat_map("source_outcomes", records, _source_outcomes)
        op.output("breakers", outcomes, breaker_sink)
    if deadletter_sink is not None:
        rule_letters = op.filter_map(
            "rule_dead_letters",
            records,
            lambda item: (
                to_deadletter_message(item) if isinstance(item, DeadLetterRecord) else None
            ),
        )
        input_letters = op.map("encode_dead_letters", letters, to_deadletter_message)
        op.output(
            "deadletter_topic",
            op.merge("all_dead_letters", rule_letters, input_letters),
            deadletter_sink,
        )
    return flow
