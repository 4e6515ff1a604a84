"""The flow as production builds it: its step ids, and what reaches each sink.

Step ids are part of the recovery format: Bytewax keys each stateful step's
snapshots (and each partitioned sink's) by the step's id, so a renamed step
would not resume from an existing recovery store.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from typing import Any

import bytewax.operators as op
from builders import T0, opportunity
from builders import event as _event
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from bytewax.testing import TestingSink, TestingSource, run_main

from dataflows.metrics import WorkerMetrics
from dataflows.pipeline import build_flow
from dataflows.positions import POSITION_INTERVAL_MS, PartitionProgress
from dataflows.watermark import InputWatermark
from mediation.rules.model import ClosedOpportunity, Policy
from mediation.rules.ulid import encode_ulid
from mediation.settings import Topics
from mediation.wire import DeadLetterRecord, encode_dead_letter, encode_event, encode_opportunity
from sinks.breakers import SourceOutcome
from sinks.positions import PositionMark

TOPICS = Topics.with_prefix("test.")


class _Writers(FixedPartitionedSink[Any, None]):
    """A partitioned sink like ``sinks.pipelined.PipelinedSink``: collects what it gets."""

    def __init__(self, out: list[Any]):
        self._out = out
        self.keys: set[str] = set()

    def list_parts(self) -> list[str]:
        return ["writers"]

    def part_fn(self, item_key: str) -> int:
        self.keys.add(item_key)
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Part:
        return _Part(self._out)


class _Part(StatefulSinkPartition[Any, None]):
    def __init__(self, out: list[Any]):
        self._out = out

    def write_batch(self, values: list[Any]) -> None:
        self._out.extend(values)

    def snapshot(self) -> None:
        return None


def _message(topic: str, value: bytes, offset: int, key: bytes = b"k") -> KafkaSourceMessage:
    return KafkaSourceMessage(
        key, value, topic=topic, partition=0, offset=offset, timestamp=(1, T0)
    )


def _input_letter() -> DeadLetterRecord:
    return DeadLetterRecord(
        id=f"{TOPICS.events}:0:99",
        day=dt.date(2024, 1, 1),
        reason="kafka_error",
        detail="broker said no",
        app_id=None,
        opportunity_key=None,
        source_topic=TOPICS.events,
        source_partition=0,
        source_offset=99,
        payload=b"",
    )


def _production_shaped(
    messages: list[KafkaSourceMessage],
    postgres: _Writers,
    deadletters: list[Any],
    breakers: list[Any],
    watermark: InputWatermark | None = None,
) -> Dataflow:
    """Every optional part on, as ``dataflows.worker`` builds it."""

    def source(flow: Dataflow) -> tuple[Stream[Any], Stream[DeadLetterRecord]]:
        raw = op.input("in", flow, TestingSource(messages))
        return raw, op.input("input_errors", flow, TestingSource([_input_letter()]))

    progress = PartitionProgress()
    watermark = watermark or InputWatermark(wall_ms=lambda: T0, flight=progress.counts)
    return build_flow(
        messages=source,
        record_sink=postgres,
        deadletter_sink=TestingSink(deadletters),
        topics=TOPICS,
        policy=Policy(),
        clock_ms=lambda _partition=None: T0,
        drain_on_eof=True,
        breaker_sink=TestingSink(breakers),
        watermark=watermark,
        metrics=WorkerMetrics(lambda: T0),
        progress=progress,
        # Every batch is a position interval later: each one sends ticks.
        wall_ms=itertools.count(0, POSITION_INTERVAL_MS).__next__,
    )


def test_the_step_ids_stay_those_the_recovery_stores_are_keyed_by() -> None:
    flow = _production_shaped([], _Writers([]), [], [])
    # In the order they are added; the flow's own steps (a step inside a
    # composite operator has its id under the operator's).
    assert [step.step_id for step in flow.substeps] == [
        "mediation-closing.in",
        "mediation-closing.input_errors",
        "mediation-closing.decode",
        "mediation-closing.split_decoded",
        "mediation-closing.closing_partitions",
        "mediation-closing.to_sink_items",
        "mediation-closing.input_dead_letters",
        "mediation-closing.count_input_dead_letters",
        "mediation-closing.to_postgres",
        "mediation-closing.to_writers",
        "mediation-closing.postgres",
        "mediation-closing.records",
        "mediation-closing.source_outcomes",
        "mediation-closing.breakers",
        "mediation-closing.rule_dead_letters",
        "mediation-closing.encode_dead_letters",
        "mediation-closing.all_dead_letters",
        "mediation-closing.deadletter_topic",
    ]


def test_every_sink_gets_its_part_of_the_output() -> None:
    key = encode_ulid(T0, os.urandom(10))
    failed = _event(key, "e1", "load_failed", 10)
    conflicting = [
        _event(key, "e2", "impression", 100),
        _event(key, "e2", "impression", 150, received_after=5_000),
    ]
    messages = [
        _message(TOPICS.opportunities, encode_opportunity(opportunity(key)), 0, key.encode()),
        _message(TOPICS.events, encode_event(failed), 1, key.encode()),
        _message(TOPICS.events, encode_event(conflicting[0]), 2, key.encode()),
        _message(TOPICS.events, encode_event(conflicting[1]), 3, key.encode()),
        _message(TOPICS.events, b"{oops", 4),
    ]
    items: list[Any] = []
    postgres = _Writers(items)
    deadletters: list[Any] = []
    breakers: list[Any] = []
    run_main(_production_shaped(messages, postgres, deadletters, breakers))

    # Postgres: records, every dead letter and position marks, under one key
    # (the sink spreads them over its writers itself).
    assert postgres.keys == {"postgres"}
    closed = [item for item in items if isinstance(item, ClosedOpportunity)]
    assert [archive.archive.opportunity_key for archive in closed] == [key]
    letters = [item for item in items if isinstance(item, DeadLetterRecord)]
    assert sorted(letter.reason for letter in letters) == [
        "duplicate_conflict",
        "invalid_json",
        "kafka_error",
    ]
    # The dead-letter topic: the same letters, keyed by opportunity (else by id).
    assert sorted(deadletters, key=lambda message: message.value) == sorted(
        (
            KafkaSinkMessage(
                (letter.opportunity_key or letter.id).encode(), encode_dead_letter(letter)
            )
            for letter in letters
        ),
        key=lambda message: message.value,
    )
    # The breakers: the closed opportunity's source outcomes (net_a failed
    # to load once, then delivered the impression).
    assert breakers == [SourceOutcome("app", "net_a", T0 // 60_000, False, 1)]


def test_position_ticks_come_out_as_marks_in_the_stream_to_postgres() -> None:
    progress_start = 5
    watermark = InputWatermark(wall_ms=lambda: T0)
    # Bytewax built the partition here, to read from offset 5: the first
    # batch's tick finds nothing sent before it and is answered at once.
    watermark.assign((TOPICS.opportunities, 0), progress_start)
    key = encode_ulid(T0, os.urandom(10))
    items: list[Any] = []
    run_main(
        _production_shaped(
            [_message(TOPICS.opportunities, encode_opportunity(opportunity(key)), 5)],
            _Writers(items),
            [],
            [],
            watermark,
        )
    )
    marks = [item for item in items if isinstance(item, PositionMark)]
    assert marks[0] == PositionMark(0, {TOPICS.opportunities: progress_start})
