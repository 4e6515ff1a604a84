"""Dead letters from the rules carry the source position and the bytes that arrived."""

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
from mediation.rules.model import Event, Policy
from mediation.rules.ulid import encode_ulid
from mediation.settings import Topics
from mediation.wire import DeadLetterRecord, encode_event, encode_opportunity

TOPICS = Topics.with_prefix("test.")


def _message(topic: str, value: bytes, offset: int, partition: int = 3) -> KafkaSourceMessage:
    return KafkaSourceMessage(
        b"k", value, topic=topic, partition=partition, offset=offset, timestamp=(1, T0)
    )


def _letters(messages: list[KafkaSourceMessage]) -> list[DeadLetterRecord]:
    out: list[object] = []

    def source(flow: Dataflow):  # type: ignore[no-untyped-def]
        raw = op.input("in", flow, TestingSource(messages))
        return raw, op.filter_map("no_input_errors", raw, lambda _m: None)

    run_main(
        build_flow(
            messages=source,
            record_sink=TestingSink(out),
            deadletter_sink=None,
            topics=TOPICS,
            policy=Policy(),
            clock_ms=lambda _partition=None: T0,
            drain_on_eof=True,
        )
    )
    return [item for item in out if isinstance(item, DeadLetterRecord)]


def _hand_written(event: Event) -> bytes:
    """The event as another producer might write it: other key order, spaces."""
    document = orjson.loads(encode_event(event))
    return (
        b"{ "
        + b", ".join(
            orjson.dumps(key) + b": " + orjson.dumps(document[key]) for key in sorted(document)
        )
        + b" }"
    )


def test_an_app_mismatch_letter_carries_the_position_and_the_bytes_that_arrived() -> None:
    key = encode_ulid(T0, os.urandom(10))
    intruder = _event(key, "e1", "impression", 100, app_id="other_app")
    original = _hand_written(intruder)
    letters = _letters(
        [
            _message(TOPICS.opportunities, encode_opportunity(opportunity(key)), 10),
            _message(TOPICS.events, original, 11),
        ]
    )
    (letter,) = letters
    assert letter.reason == "opportunity_app_mismatch"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        TOPICS.events,
        3,
        11,
    )
    assert letter.payload == original


def test_a_held_event_refused_later_still_carries_its_origin() -> None:
    # The event arrives before its opportunity (held), then the opportunity
    # of another app: the refusal comes long after the message was read.
    key = encode_ulid(T0, os.urandom(10))
    early = _event(key, "e1", "loaded", 100, app_id="other_app")
    letters = _letters(
        [
            _message(TOPICS.events, encode_event(early), 20),
            _message(TOPICS.opportunities, encode_opportunity(opportunity(key)), 21),
        ]
    )
    (letter,) = letters
    assert letter.reason == "opportunity_app_mismatch"
    assert (letter.source_topic, letter.source_offset) == (TOPICS.events, 20)
    assert letter.payload == encode_event(early)


def test_a_losing_conflicting_copy_carries_its_own_origin_at_close() -> None:
    key = encode_ulid(T0, os.urandom(10))
    kept = _event(key, "e1", "impression", 100)
    loser = _event(key, "e1", "impression", 150, received_after=5_000)
    loser_bytes = _hand_written(loser)
    letters = _letters(
        [
            _message(TOPICS.opportunities, encode_opportunity(opportunity(key)), 30),
            _message(TOPICS.events, loser_bytes, 31),
            _message(TOPICS.events, encode_event(kept), 32),
        ]
    )
    (letter,) = letters
    assert letter.reason == "duplicate_conflict"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        TOPICS.events,
        3,
        31,
    )
    assert letter.payload == loser_bytes
    assert letter.id.startswith("rule:")  # the id still ignores the position
