"""The closing dataflow with Bytewax's testing source and sink (no services)."""

from __future__ import annotations

import os

import bytewax.operators as op
import orjson
from builders import T0, opportunity
from builders import event as _event
from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from dataflows.pipeline import build_flow
from dataflows.positions import PartitionProgress
from mediation.rules.model import (
    ClosedOpportunity,
    Event,
    OrphanEvents,
    Policy,
)
from mediation.rules.ulid import encode_ulid
from mediation.settings import Topics
from mediation.wire import DeadLetterRecord, encode_event, encode_opportunity
from sinks.breakers import SourceOutcome

TOPICS = Topics.with_prefix("test.")


def _message(topic: str, value: bytes, offset: int, key: bytes = b"k") -> KafkaSourceMessage:
    return KafkaSourceMessage(
        key, value, topic=topic, partition=0, offset=offset, timestamp=(1, T0)
    )


def _run(
    messages: list[KafkaSourceMessage], progress: PartitionProgress | None = None
) -> list[object]:
    out: list[object] = []

    def source(flow: Dataflow):  # type: ignore[no-untyped-def]
        raw = op.input("in", flow, TestingSource(messages))
        return raw, op.filter_map("no_input_errors", raw, lambda _m: None)

    flow = build_flow(
        messages=source,
        record_sink=TestingSink(out),
        deadletter_sink=None,
        topics=TOPICS,
        policy=Policy(),
        clock_ms=lambda _partition=None: T0,
        drain_on_eof=True,
        progress=progress,
    )
    run_main(flow)
    return out


def test_duplicated_and_reordered_events_close_into_one_archive_record() -> None:
    key = encode_ulid(T0, os.urandom(10))
    events = [
        _event(key, "e1", "loaded", 100),
        _event(key, "e2", "impression", 200),
        _event(key, "e3", "click", 300),
    ]
    messages = [
        _message(TOPICS.events, encode_event(events[2]), 0),
        _message(TOPICS.events, encode_event(events[1]), 1),
        _message(TOPICS.opportunities, encode_opportunity(opportunity(key)), 2),
        _message(TOPICS.events, encode_event(events[1]), 3),  # duplicate
        _message(TOPICS.events, encode_event(events[0]), 4),
    ]
    out = _run(messages)
    closed = [item for item in out if isinstance(item, ClosedOpportunity)]
    assert len(closed) == 1
    archive = closed[0].archive
    assert (archive.outcome, archive.credited_source_id, archive.revenue_micros) == (
        "clicked",
        "net_a",
        500,
    )
    assert archive.counted_events == 3
    assert not [item for item in out if isinstance(item, DeadLetterRecord)]


def test_every_record_sent_to_the_closing_step_is_counted_applied() -> None:
    key = encode_ulid(T0, os.urandom(10))
    other = encode_ulid(T0 + 60_000, os.urandom(10))  # another bucket
    progress = PartitionProgress()
    out = _run(
        [
            _message(TOPICS.opportunities, encode_opportunity(opportunity(key)), 0),
            _message(TOPICS.events, encode_event(_event(key, "e1", "loaded", 100)), 1),
            _message(TOPICS.opportunities, encode_opportunity(opportunity(other)), 2),
            _message(TOPICS.events, b"{oops", 3),  # a dead letter: never sent to closing
        ],
        progress,
    )
    assert progress.counts(0) == (3, 3)
    assert len([item for item in out if isinstance(item, ClosedOpportunity)]) == 2


def test_malformed_message_becomes_a_dead_letter_with_its_source_position() -> None:
    out = _run(
        [
            _message(TOPICS.events, b"{oops", 41),
            _message(TOPICS.events, orjson.dumps({"schema": "event.v9"}), 42),
        ]
    )
    letters = sorted(
        (item for item in out if isinstance(item, DeadLetterRecord)),
        key=lambda letter: letter.source_offset or 0,
    )
    assert [(letter.reason, letter.source_offset) for letter in letters] == [
        ("invalid_json", 41),
        ("unknown_schema", 42),
    ]
    assert letters[0].payload == b"{oops"
    assert letters[0].id == f"{TOPICS.events}:0:41"


def test_event_without_opportunity_is_stored_as_orphan_when_drained() -> None:
    key = encode_ulid(T0, os.urandom(10))
    out = _run([_message(TOPICS.events, encode_event(_event(key, "e1", "loaded", 0)), 0)])
    orphans = [item for item in out if isinstance(item, OrphanEvents)]
    assert len(orphans) == 1
    assert orphans[0].events[0].excluded_reason == "unknown_opportunity"


def test_conflicting_copy_of_an_event_is_dead_lettered_and_the_first_copy_counts() -> None:
    key = encode_ulid(T0, os.urandom(10))
    original = _event(key, "e1", "impression", 100)
    conflicting = _event(key, "e1", "impression", 150, received_after=5_000)
    out = _run(
        [
            _message(TOPICS.opportunities, encode_opportunity(opportunity(key)), 0),
            _message(TOPICS.events, encode_event(original), 1),
            _message(TOPICS.events, encode_event(conflicting), 2),
        ]
    )
    letters = [item for item in out if isinstance(item, DeadLetterRecord)]
    assert [letter.reason for letter in letters] == ["duplicate_conflict"]
    closed = next(item for item in out if isinstance(item, ClosedOpportunity))
    assert [stored.event.ts_ms for stored in closed.events] == [original.ts_ms]


def test_poison_messages_become_dead_letters_instead_of_crashing_the_worker() -> None:
    far_future_key = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"  # a valid ULID of year ~10889
    event = orjson.loads(encode_event(_event(encode_ulid(T0, os.urandom(10)), "e", "loaded", 0)))
    event["opportunity_key"] = far_future_key
    wire_opportunity = orjson.loads(
        encode_opportunity(opportunity(encode_ulid(T0, os.urandom(10))))
    )
    wire_opportunity["closure_window_ms"] = 2**62
    messages = [
        _message(TOPICS.events, orjson.dumps(event), 1, key=far_future_key.encode()),
        _message(TOPICS.opportunities, orjson.dumps(wire_opportunity), 2),
        _message(TOPICS.events, b"{bad", 3, key=far_future_key.encode()),
    ]
    out = _run(messages)
    assert sorted((d.reason, d.source_offset) for d in out if isinstance(d, DeadLetterRecord)) == [
        ("invalid_field", 1),
        ("invalid_field", 2),
        ("invalid_json", 3),
    ]


def test_closed_opportunities_feed_source_outcomes_to_the_breakers() -> None:
    key = encode_ulid(T0, os.urandom(10))
    failed = Event(
        event_id="f",
        app_id="app",
        opportunity_key=key,
        type="load_failed",
        ts_ms=T0 + 10,
        server_ts_ms=T0 + 10,
        received_at_ms=T0 + 10,
        source_id="net_a",
    )
    outcomes: list[object] = []

    def source(flow: Dataflow):  # type: ignore[no-untyped-def]
        raw = op.input(
            "in",
            flow,
            TestingSource(
                [
                    _message(TOPICS.opportunities, encode_opportunity(opportunity(key)), 0),
                    _message(TOPICS.events, encode_event(failed), 1),
                ]
            ),
        )
        return raw, op.filter_map("no_input_errors", raw, lambda _m: None)

    flow = build_flow(
        messages=source,
        record_sink=TestingSink([]),
        deadletter_sink=None,
        topics=TOPICS,
        policy=Policy(),
        clock_ms=lambda _partition=None: T0,
        drain_on_eof=True,
        breaker_sink=TestingSink(outcomes),
    )
    run_main(flow)
    assert outcomes == [SourceOutcome("app", "net_a", T0 // 60_000, True, 1)]
