"""The closing dataflow, wired from named steps; sources and sinks are arguments.

::

    messages ──observe+decode──┬── (bucket, record) ──closing──to_sink_items──┬─> postgres
                               └── dead letters ───────────────────────────────┤
                                   dead letters (input and rules) ──> deadletter topic
                                   closed opportunities' source outcomes ──> breakers

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

from mediation.rules.breaker import source_outcomes
from mediation.rules.model import (
    ClosedOpportunity,
    DeadLetter,
    Event,
    LateEvent,
    Opportunity,
    Output,
    Policy,
)
from mediation.settings import Topics
from sinks.breakers import SourceOutcome
from sinks.records import DeadLetterRecord, SinkItem, dead_letter_from_rules, encode_dead_letter

from .closing import closing_builder, steady_pace
from .decode import Decoded, decode_message
from .inflight import DeliveryLedger, Marker
from .metrics import WorkerMetrics
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


def _writer_key(item: SinkItem) -> str:
    if isinstance(item, DeadLetterRecord):
        return item.opportunity_key or item.id
    if isinstance(item, ClosedOpportunity):
        return item.opportunity.opportunity_key
    if isinstance(item, LateEvent):
        return item.stored.event.opportunity_key
    return item.opportunity_key  # OrphanEvents


def build_flow(
    *,
    messages: Callable[[Dataflow], tuple[Stream[RawMessage], Stream[DeadLetterRecord]]],
    record_sink: Sink[Any],
    deadletter_sink: Sink[Any] | None,
    topics: Topics,
    policy: Policy,
    clock_ms: Callable[[], int],
    drain_on_eof: bool = False,
    flow_id: str = "mediation-closing",
    breaker_sink: Sink[SourceOutcome] | None = None,
    watermark: InputWatermark | None = None,
    metrics: WorkerMetrics | None = None,
    ledger: DeliveryLedger | None = None,
) -> Dataflow:
    """Build the dataflow.

    ``record_sink`` takes sink items, or, when it is a
    ``FixedPartitionedSink`` (production: ``sinks.pipelined``), ``(key,
    item)`` pairs keyed by opportunity.
    ``messages`` adds the input step(s) to the flow and returns the stream of
    raw messages plus a stream of input-level dead letters (e.g. Kafka
    errors). ``drain_on_eof`` closes every open opportunity when a finite
    input ends (tests, batch re-processing); production tails forever.
    ``watermark``, when given, is fed every input message; production passes
    one and uses its ``now_ms`` as ``clock_ms`` so that closing follows event
    time (see ``dataflows/watermark.py``). ``ledger``, when given, follows
    each input batch's records with markers and learns when they have all
    reached the closing step (the watermark is released only that far;
    ``dataflows/inflight.py``).
    """
    flow = Dataflow(flow_id)
    raw, input_errors = messages(flow)

    # One Python call per input batch: observe it (event time, metrics, once
    # per partition and topic), decode each message. Bytewax's per-step cost
    # is paid per item or per batch, so steps are few and batched.
    def observe_and_decode(
        messages: list[RawMessage],
    ) -> list[Decoded | tuple[str, Marker] | DeadLetterRecord]:
        decoded: list[Decoded | tuple[str, Marker] | DeadLetterRecord] = [
            decode_message(topics, message) for message in messages
        ]
        # Issued before the watermark sees the batch's timestamps: a value
        # computed from them is released only once the markers are applied.
        if ledger is not None:
            buckets = {item[0] for item in decoded if type(item) is tuple}
            decoded.extend(ledger.issue(buckets))
        if watermark is not None:
            watermark.observe_batch(messages)
        if metrics is not None:
            metrics.observe_messages(message.topic for message in messages)
        return decoded

    decoded = op.flat_map_batch("decode", raw, observe_and_decode)
    branch = op.branch("split_decoded", decoded, lambda item: isinstance(item, tuple))
    keyed: Stream[tuple[str, Opportunity | Event | Marker]] = branch.trues  # type: ignore[assignment]
    pace = watermark.pace if watermark is not None else steady_pace
    counts = metrics.state if metrics is not None else None
    # A new step id for the bucketed state (recovery stores of the earlier
    # per-opportunity layout are not resumed into it; docs/operations.md).
    outputs = op.stateful_batch(
        "closing_buckets",
        keyed,
        closing_builder(policy, clock_ms, drain_on_eof, pace, counts, ledger),
    )

    def to_sink_item(key_output: tuple[str, Output]) -> SinkItem:
        output = key_output[1]
        item = (
            dead_letter_from_rules(output, clock_ms(), topics.events)
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
    # Records and dead letters alike go to Postgres, in the same batches.
    to_postgres: Stream[Any] = op.merge("to_postgres", sink_items, letters)
    if isinstance(record_sink, FixedPartitionedSink):
        # Routed to the sink's partitions (writers) by opportunity.
        to_postgres = op.key_on("route_to_writer", to_postgres, _writer_key)
    op.output("postgres", to_postgres, record_sink)
    if breaker_sink is not None:
        outcomes = op.flat_map("source_outcomes", sink_items, _source_outcomes)
        op.output("breakers", outcomes, breaker_sink)
    if deadletter_sink is not None:
        rule_letters = op.filter_map(
            "rule_dead_letters",
            sink_items,
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
